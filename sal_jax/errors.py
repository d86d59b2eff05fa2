"""The one error type for bad input (config, dataset, checkpoint)."""


class ConfigError(ValueError):
    """Bad user input. The message is one line that names the field (or path) and what is wrong.

    Raised before any long computation; the command-line entry point prints it without a traceback.
    """
