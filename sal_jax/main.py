"""Command line: `sal-jax --config=experiments/configs/digits_mlp.py [--config.key=value ...] --workdir=DIR`."""
from __future__ import annotations

import importlib.util
import os
import re
import signal
import sys

import ml_collections
from absl import app, flags, logging
from ml_collections import config_flags

from sal_jax.config import unknown_key
from sal_jax.errors import ConfigError, TrainingDiverged
from sal_jax.host_memory import keep_freed_host_memory

_CONFIG = config_flags.DEFINE_config_file("config", None, "Path to an ml_collections config file.",
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for results (JSON, table, plot).")
_PROGRESS = flags.DEFINE_bool("progress", True, "Show progress bars.")
_COMPILATION_CACHE = flags.DEFINE_string(
    "compilation_cache", os.path.join(os.path.expanduser("~"), ".cache", "sal_jax", "xla"),
    "JAX's persistent compilation cache: seeds, baselines and reruns reuse the compiled programs of "
    "levels they share ('' = off). Compilation is not training time, so it changes no result.")
flags.mark_flags_as_required(["config"])


def _main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    logging.set_verbosity(logging.WARNING)  # JAX logs its backend probing at INFO
    keep_freed_host_memory()  # before the first large allocation; see sal_jax/host_memory.py
    from sal_jax.train import train_and_evaluate  # after flag parsing: keeps --help fast

    config = _CONFIG.value
    workdir = _WORKDIR.value or f"runs/{config.data.name}_{config.model.family}"
    from sal_jax.checkpoint import Preempted
    from sal_jax.determinism import apply_determinism
    from sal_jax.parallel import initialize_distributed

    if _COMPILATION_CACHE.value:
        import jax
        jax.config.update("jax_compilation_cache_dir", _COMPILATION_CACHE.value)
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)  # small levels compile in < 1 s
    try:
        apply_determinism(config.deterministic)  # XLA reads its flags when the backend starts: before that
        initialize_distributed(config.parallel)  # before anything touches devices; see config.parallel
        results = train_and_evaluate(config, workdir, progress=_PROGRESS.value)
    except ConfigError as error:
        sys.exit(f"error: {error}")
    except TrainingDiverged as error:  # one line; the checkpoints from before it stay for a rerun
        sys.exit(f"error: training diverged: {error}")
    except Preempted as stop:  # SIGTERM or Ctrl-C, after saving: 143 or 130, what schedulers and shells expect
        _stop(str(stop), stop.exit_code)
    except KeyboardInterrupt:  # Ctrl-C where no checkpointer listens: before training, or with checkpoints off
        _stop("interrupted (SIGINT): nothing saved since the last checkpoint, if any", 128 + signal.SIGINT)
    if results["table"]:  # process 0 of a multi-process run, or the only one
        print("\n".join(line for line in results["table"].splitlines() if not line.startswith("![")))
        print(f"\nwall time {results['wall_time']:.1f} s; results, table and plot in {workdir}/")


def _stop(message: str, exit_code: int) -> None:
    print(f"\n{message}", file=sys.stderr)  # on its own line, below any progress bar
    sys.exit(exit_code)


_CONFIG_ARG = re.compile(r"^--?config(=|$)")
_OVERRIDE_ARG = re.compile(r"^--?(no)?config\.([^=]+)")


def _parse_flags(argv: list[str]) -> list[str]:
    """absl's flag parsing, with a bad command line reported as one line (`error: ...`, exit 1).

    ml_collections loads the config file and applies the --config.* overrides while flags are parsed,
    before `_main` runs: a missing file or a misspelled key would otherwise escape as a long traceback.
    Other errors raised inside a config file keep their traceback: it points at the user's bug.
    """
    try:
        args = flags.FLAGS(argv)
    except flags.Error as error:  # absl's own one-line messages (a bad value, a missing --config)
        sys.exit(f"error: {str(error).strip()}")  # multi-line only for a config file's own error trace
    except Exception:  # OSError, AttributeError, KeyError from ml_collections' loading and overrides
        problem = config_problem(argv)
        if problem is None:
            raise
        sys.exit(f"error: {problem}")
    if not isinstance(_CONFIG.value, ml_collections.ConfigDict):  # ml_collections defers a load failure
        sys.exit(f"error: {config_problem(argv) or '--config: the config file could not be loaded'}")
    return args


def config_problem(argv: list[str]) -> str | None:
    """One line naming what is wrong with --config or a --config.* override in `argv`, or None."""
    argv = flags.FLAGS.read_flags_from_files(argv, force_gnu=False)
    value = None
    for i, arg in enumerate(argv):  # the last --config wins, as in absl
        if _CONFIG_ARG.match(arg):
            value = arg.split("=", 1)[1] if "=" in arg else (argv[i + 1] if i + 1 < len(argv) else None)
    if value is None:
        return None
    path = value.split(":", 1)[0]  # "file.py:arg" passes arg to get_config
    if not os.path.exists(path):
        return f"--config: no config file at {path!r}"
    if not os.path.isfile(path):
        return f"--config: {path!r} is not a file"
    try:  # loaded again, as ml_collections loads it, to walk the override keys
        spec = importlib.util.spec_from_file_location("sal_jax_config_check", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        config = module.get_config(*value.split(":", 1)[1:])
    except Exception:  # the config file itself fails: the caller shows that error
        return None
    if not isinstance(config, ml_collections.ConfigDict):
        return f"--config: {path!r} could not be loaded (its get_config() must return a ConfigDict)"
    for arg in argv:
        match = _OVERRIDE_ARG.match(arg)
        if match:
            problem = unknown_key(config, match.group(2))
            if problem:
                return f"--config.{match.group(2)}: {problem}"
    return None


def run() -> None:
    """Console-script entry point."""
    app.run(_main, flags_parser=_parse_flags)


if __name__ == "__main__":
    run()
