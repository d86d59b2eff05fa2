"""The one error type for bad input (config, dataset, checkpoint), and the type checks its callers share."""


class ConfigError(ValueError):
    """Bad user input. The message is one line that names the field (or path) and what is wrong.

    Raised before any long computation; the command-line entry point prints it without a traceback.
    """


def is_integer(value) -> bool:
    """An int that is not a bool (True is an int in Python; a config value True must not pass as 1)."""
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value) -> bool:
    """An int or a float that is not a bool."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def first_line(error: BaseException) -> str:
    """An exception's first message line (its type name if it has none): for one-line reports."""
    return (str(error).strip().splitlines() or [type(error).__name__])[0]


class TrainingDiverged(RuntimeError):
    """A level's loss or gradient went non-finite: training stopped there. The message is one line naming
    the level, round, step and the term that went non-finite first; checkpoints from before it are kept."""
