"""Benchmark (not a test): where a small ladder's time goes before and around training -- compilation.

    python benchmarks/compile_breakdown.py [--config=experiments/configs/digits_mlp.py] [--seeds=1]

Trains the config's ladder (SAL and both plain baselines, no checkpoints, no compilation cache) through
`train_and_evaluate`, with JAX's compile log captured, and prints per compiled function: how many
programs, and the seconds spent tracing, lowering to MLIR and compiling with XLA; then the run's wall time
beside its training time (every level's and baseline's `train_time`) and compile time (`compile_time`,
as the library records it). A program is counted by the function it compiles: `train_chunk` and
`eval_chunk` are a level's training and evaluation (sal_jax.chunks), `<lambda>`s are mostly the teacher
cache's forward, and single primitives (`_truncated_normal`, `add`, ...) are the eager ops of
initialising levels on the CPU, compiled once a process per shape.
"""
from __future__ import annotations

import collections
import importlib.util
import logging
import re
import sys
import tempfile
import time

from absl import app, flags

_CONFIG = flags.DEFINE_string("config", "experiments/configs/digits_mlp.py", "An experiment config file.")
_SEEDS = flags.DEFINE_integer("seeds", 1, "Seeds (the first compiles; the others reuse its programs).")

# JAX's own messages with jax_log_compiles (jax 0.10): what finished, for which function, in how long.
PATTERNS = {"trace": re.compile(r"Finished tracing (.+?) for jit in ([\d.e-]+) sec"),
            "lower": re.compile(r"Finished jaxpr to MLIR module conversion jit\((.+?)\) in ([\d.e-]+) sec"),
            "compile": re.compile(r"Finished XLA compilation of jit\((.+?)\) in ([\d.e-]+) sec")}


class CompileLog(logging.Handler):
    """Sums each phase's seconds per function name from JAX's compile log."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.seconds: dict[str, dict[str, float]] = collections.defaultdict(lambda: collections.defaultdict(float))
        self.programs: collections.Counter[str] = collections.Counter()

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        for phase, pattern in PATTERNS.items():
            match = pattern.search(message)
            if match:
                name = match.group(1)
                self.seconds[name][phase] += float(match.group(2))
                self.programs[name] += phase == "compile"


def main(argv: list[str]) -> None:
    import jax

    from sal_jax.train import train_and_evaluate

    jax.config.update("jax_log_compiles", True)
    log = CompileLog()
    for name in ("jax._src.dispatch", "jax._src.interpreters.pxla", "jax._src.pjit", "jax._src.compiler"):
        logger = logging.getLogger(name)
        logger.addHandler(log)
        logger.propagate = False  # the numbers, not hundreds of log lines
    spec = importlib.util.spec_from_file_location("bench_config", _CONFIG.value)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    config = module.get_config()
    config.num_seeds, config.checkpoint.enabled, config.tensorboard = _SEEDS.value, False, False
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as workdir:
        results = train_and_evaluate(config, workdir, progress=False)
    wall = time.perf_counter() - start
    runs = [run for cell in results["cells"] for seed in cell["runs"]
            for run in [*seed["sal"], seed.get("plain_epoch_matched"), seed.get("plain_time_matched")] if run]
    print("| function | programs | trace (s) | lower (s) | XLA compile (s) |\n| --- | --- | --- | --- | --- |")
    totals = collections.Counter()
    for name, phases in sorted(log.seconds.items(), key=lambda item: -sum(item[1].values())):
        totals.update(phases)
        print(f"| {name} | {log.programs[name]} | {phases['trace']:.2f} | {phases['lower']:.2f} | "
              f"{phases['compile']:.2f} |")
    print(f"| all | {sum(log.programs.values())} | {totals['trace']:.2f} | {totals['lower']:.2f} | "
          f"{totals['compile']:.2f} |")
    print(f"\ntrain_and_evaluate {wall:.1f} s: training {sum(r['train_time'] for r in runs):.1f} s, "
          f"compile_time {sum(r['compile_time'] for r in runs):.1f} s ({len(runs)} level trainings, "
          f"{_SEEDS.value} seed(s)); jax {jax.__version__}, {jax.devices()[0].device_kind}", file=sys.stdout)


if __name__ == "__main__":
    app.run(main)
