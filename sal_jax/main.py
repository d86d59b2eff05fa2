"""Command line: `sal-jax --config=experiments/configs/digits_mlp.py [--config.key=value ...] --workdir=DIR`."""
from __future__ import annotations

import os
import signal
import sys

from absl import app, flags, logging
from ml_collections import config_flags

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


def run() -> None:
    """Console-script entry point."""
    app.run(_main)


if __name__ == "__main__":
    run()
