"""Command line: `sal-jax --config=experiments/configs/digits_mlp.py [--config.key=value ...] --workdir=DIR`."""
from __future__ import annotations

import importlib.util
import os
import re
import signal
import sys
import textwrap
from typing import Any


def _interrupted_before_training(signum: int | None = None, frame=None) -> None:
    """Ctrl-C while the modules load: one line and exit code 130, at once. A KeyboardInterrupt there
    printed a 30-line traceback through the imports, or was swallowed by a garbage-collection callback
    (JAX registers one) and the run went on. Nothing has been written yet."""
    print("interrupted (SIGINT) before training: nothing written", file=sys.stderr, flush=True)
    os._exit(128 + signal.SIGINT)


try:  # before run() installs the handler above, Ctrl-C raises KeyboardInterrupt: the same line
    import ml_collections
    from absl import app, flags, logging
    from ml_collections import config_flags

    from sal_jax.config import apply_quick, check_values, unknown_key
    from sal_jax.errors import ConfigError, TrainingDiverged
    from sal_jax.host_memory import keep_freed_host_memory
except KeyboardInterrupt:
    _interrupted_before_training()

_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "An experiment config file, e.g. experiments/configs/digits_mlp.py (FILE:ARG passes ARG "
    "to its get_config()).", lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for results (JSON, table, plots) and checkpoints; "
                               "default runs/<data.name>_<model.family>.")
_PROGRESS = flags.DEFINE_bool("progress", True, "Show progress bars.")
_COMPILATION_CACHE = flags.DEFINE_string(
    "compilation_cache", os.path.join(os.path.expanduser("~"), ".cache", "sal_jax", "xla"),
    "JAX's persistent compilation cache, ~/.cache/sal_jax/xla by default ('' = off): seeds, baselines and "
    "reruns reuse the compiled programs of levels they share. Compilation is not training time, so it "
    "changes no result.")
flags.mark_flags_as_required(["config"])

USAGE = """\
usage: sal-jax --config=FILE [--config.KEY=VALUE ...] [--workdir=DIR] [--noprogress]
               [--compilation_cache=DIR]

Trains SAL, its baselines and ablations over the config's seeds and sweep; writes results.json,
results.md and plots to the workdir; rerun the same command to resume from its checkpoints.

{flags}
  --config.KEY=VALUE
    Override a config value, e.g. --config.train.epochs=50 --config.num_seeds=3
    --config.model.levels="(1, 2)" --noconfig.tensorboard (the keys: sal_jax/config.py).
  --helpfull
    Every flag, absl's own included.
"""
_HELP_FLAGS = {"config": "--config=FILE", "workdir": "--workdir=DIR", "progress": "--[no]progress",
               "compilation_cache": "--compilation_cache=DIR"}


def usage() -> str:
    """The --help text: our flags with their help as defined above, and how to override config values."""
    lines = []
    for name, form in _HELP_FLAGS.items():
        lines.append(f"  {form}")
        lines += textwrap.wrap(flags.FLAGS[name].help, 100, initial_indent="    ", subsequent_indent="    ")
    return USAGE.format(flags="\n".join(lines))


CPU_DEVICES_FLAG = "--xla_force_host_platform_device_count"


def one_cpu_device_per_core() -> None:
    """Members (config.train.ensemble) split over devices; on a CPU the cores are those lanes, but XLA
    gives the CPU one device: ask for one per core, before the backend starts (unless XLA_FLAGS already
    sets a count). Only the CPU backend reads it; members use it only when the CPU is the platform."""
    flags_now = os.environ.get("XLA_FLAGS", "")
    if CPU_DEVICES_FLAG not in flags_now:
        os.environ["XLA_FLAGS"] = f"{flags_now} {CPU_DEVICES_FLAG}={len(os.sched_getaffinity(0))}".strip()


def _main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    config = _CONFIG.value
    workdir = _WORKDIR.value or f"runs/{config.data.name}_{config.model.family}"
    try:
        check_values(apply_quick(config))  # before the imports below (seconds): a bad value fails at once
    except ConfigError as error:
        sys.exit(f"error: {error}")
    logging.set_verbosity(logging.WARNING)  # JAX logs its backend probing at INFO
    if config.train.ensemble != 1:
        one_cpu_device_per_core()
    keep_freed_host_memory()  # before the first large allocation; see sal_jax/host_memory.py
    from sal_jax.checkpoint import Preempted
    from sal_jax.determinism import apply_determinism
    from sal_jax.parallel import initialize_distributed
    from sal_jax.train import train_and_evaluate

    if _COMPILATION_CACHE.value:
        import jax
        jax.config.update("jax_compilation_cache_dir", _COMPILATION_CACHE.value)
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)  # small levels compile in < 1 s
    # From here Ctrl-C raises KeyboardInterrupt: train_and_evaluate removes the folders it made, and
    # during training the checkpointer saves first.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        apply_determinism(config.deterministic)  # XLA reads its flags when the backend starts: before that
        initialize_distributed(config.parallel)  # before anything touches devices; see config.parallel
        results = train_and_evaluate(config, workdir, progress=_PROGRESS.value, prepared=True)
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
        times = results["wall_times"]
        runs = f" over {len(times)} invocations (this one {times[-1]:.1f} s)" if len(times) > 1 else ""
        print(f"\nwall time {results['wall_time']:.1f} s{runs}; results, table and plot in {workdir}/")
    failed = failed_members(results)
    if failed:  # the other members' results are written; these members' records say where they failed
        sys.exit(f"error: {len(failed)} member{'s' if len(failed) > 1 else ''} went non-finite and stopped: "
                 + "; ".join(failed))


def failed_members(results: dict) -> list[str]:
    """The one-line failures of members (config.train.ensemble) in a run's results: each run record's
    "failure", but the "frozen: ..." of a failed member's later levels."""
    found: list[str] = []

    def walk(value: Any) -> None:
        if isinstance(value, dict):
            failure = value.get("failure")
            if isinstance(failure, str) and failure and not failure.startswith("frozen:"):
                found.append(failure)
            for item in value.values():
                walk(item)
        elif isinstance(value, list):
            for item in value:
                walk(item)

    walk(results["cells"])
    return found


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
    if {"-h", "-help", "--help", "-?", "--helpshort"} & set(argv[1:]):  # absl's help: exit 1, no flags shown
        print(usage(), end="")
        sys.exit(0)
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
    signal.signal(signal.SIGINT, _interrupted_before_training)  # until _main hands over to training
    app.run(_main, flags_parser=_parse_flags)


if __name__ == "__main__":
    run()
