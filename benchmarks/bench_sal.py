"""Benchmark (not a test): what SAL's guidance, the training loop and the ladder cost, and JAX vs PyTorch.

    python benchmarks/bench_sal.py [--families=mlp,cnn,rnn] [--torch] [--repeats=5]

Every number is a ratio of two measurements taken in the same run, interleaved (A B A B ...) and
summarised by the median, because these machines are noisy. Prints a markdown report. The training
loop uses the teacher cache (the default without augmentation), so it is compared with the cached step.
"""
from __future__ import annotations

import dataclasses
import os
import resource
import statistics
import sys
import time
from typing import Any, Callable

from absl import app, flags
import jax
import ml_collections
import numpy as np
import optax

from sal_jax.config import default_config
from sal_jax.data.arrays import ArrayDataset
from sal_jax.guidance import make_guidance
from sal_jax.ladder import train_ladder, train_level
from sal_jax.models import CNN, MLP, RNN
from sal_jax.step import init_state, make_train_step
from sal_jax.teacher_cache import teacher_cache

_FAMILIES = flags.DEFINE_list("families", ["mlp", "cnn", "rnn"], "Level families to measure.")
_TORCH = flags.DEFINE_bool("torch", False, "Also measure the PyTorch eager reference (needs torch).")
_REPEATS = flags.DEFINE_integer("repeats", 5, "Interleaved repetitions per measurement.")
_STEPS = flags.DEFINE_integer("steps", 20, "Steps per timed repetition.")


@dataclasses.dataclass(frozen=True)
class Setup:
    """A teacher/student pair at a realistic batch size, and a synthetic dataset shaped for it."""

    name: str
    teacher: Any
    student: Any
    ladder: tuple
    batch: int
    make_x: Callable[[np.random.Generator, int], np.ndarray]
    classes: int = 10


def setups() -> dict[str, Setup]:
    images = lambda shape: (lambda rng, n: rng.normal(size=(n, *shape)).astype(np.float32))
    tokens = lambda rng, n: np.where(np.arange(32) < rng.integers(4, 33, (n, 1)),
                                     rng.integers(2, 5000, (n, 32)), 0).astype(np.int32)
    return {
        "mlp": Setup("MLP 4x256 -> 8x256, 784 inputs", MLP(4, 256, 10), MLP(8, 256, 10),
                     (MLP(2, 256, 10), MLP(4, 256, 10), MLP(8, 256, 10)), 128, images((784,))),
        "cnn": Setup("CNN (16,32) -> (16,32,64) + BatchNorm, 32x32x3", CNN((16, 32), 10), CNN((16, 32, 64), 10),
                     (CNN((16,), 10), CNN((16, 32), 10), CNN((16, 32, 64), 10)), 128, images((32, 32, 3))),
        "rnn": Setup("GRU 1x128 -> 2x128, 32 tokens, vocab 5000", RNN(1, 128, 5000, 6), RNN(2, 128, 5000, 6),
                     (RNN(1, 128, 5000, 6), RNN(2, 128, 5000, 6), RNN(3, 128, 5000, 6)), 128, tokens, 6),
    }


def interleaved(fns: dict[str, Callable[[], float]], repeats: int) -> dict[str, float]:
    """Median seconds of each fn, run in turn A B A B ..., after one warm-up call each."""
    for fn in fns.values():
        fn()
    times = {k: [] for k in fns}
    for _ in range(repeats):
        for k, fn in fns.items():
            times[k].append(fn())
    return {k: statistics.median(v) for k, v in times.items()}


def step_timer(step, state, teacher_vars, batches, steps):
    """A closure timing `steps` calls of a jitted step (state threaded, donated), per step."""
    holder = [state]

    def run() -> float:
        start = time.perf_counter()
        s = holder[0]
        for i in range(steps):
            s, _ = step(s, teacher_vars, batches[i % len(batches)])
        jax.block_until_ready(s)
        holder[0] = s
        return (time.perf_counter() - start) / steps
    return run


def dataset(setup: Setup, n: int) -> ArrayDataset:
    rng = np.random.default_rng(0)
    x, y = setup.make_x(rng, n), rng.integers(0, setup.classes, n).astype(np.int32)
    return ArrayDataset("synthetic", x, y, x[: setup.batch * 2], y[: setup.batch * 2], setup.classes,
                        vocab_size=5000 if x.dtype == np.int32 else None)


def bench_config(setup: Setup) -> ml_collections.ConfigDict:
    config = default_config()
    config.train.batch_size = setup.batch
    config.train.epochs = 2
    config.train.eval_every = 100  # evaluation only at the end: the loop, not evaluation, is measured
    config.baselines.time_matched = False
    return config


def measure_family(family: str, setup: Setup, repeats: int, steps: int, with_torch: bool) -> dict[str, Any]:
    config = bench_config(setup)
    data = dataset(setup, setup.batch * 16)
    batches = [jax.device_put({"x": data.x_train[i * setup.batch:(i + 1) * setup.batch],
                               "y": data.y_train[i * setup.batch:(i + 1) * setup.batch],
                               "weight": np.ones(setup.batch, np.float32)}) for i in range(4)]
    x0 = batches[0]["x"]
    tx = optax.adam(1e-3)
    teacher_vars = dict(setup.teacher.init(jax.random.key(1), x0))
    guidance = make_guidance(setup.student, setup.teacher, x0, config.guidance, 1000)
    guided_step = make_train_step(setup.student, tx, guidance)
    plain_step = make_train_step(setup.student, tx)
    guided_state = init_state(setup.student, tx, jax.random.key(0), x0, guidance)
    plain_state = init_state(setup.student, tx, jax.random.key(0), x0)
    cached_state = init_state(setup.student, tx, jax.random.key(0), x0, guidance)
    cached_batches = [{**b, **jax.device_put(teacher_cache(guidance, teacher_vars, np.asarray(b["x"]), setup.batch))}
                      for b in batches]
    timers = {"guided step": step_timer(guided_step, guided_state, teacher_vars, batches, steps),
              "guided step, cached teacher": step_timer(guided_step, cached_state, teacher_vars, cached_batches, steps),
              "plain step": step_timer(plain_step, plain_state, None, batches, steps)}

    def loop() -> float:  # one real epoch of train_level (input pipeline, transfers, metrics, cache included)
        run = train_level(setup.student, data, config, level=2, epochs=2, teacher=setup.teacher,
                          teacher_variables=teacher_vars)
        loop.compiles = run.compiles
        return (run.history[1]["train_time"] - run.history[0]["train_time"]) / (len(data.x_train) // setup.batch)
    timers["training loop (per step)"] = loop

    if with_torch:
        sys.path.insert(0, os.path.dirname(__file__))
        import torch_sal  # optional: only the benchmark needs torch
        host = [(np.asarray(b["x"]), np.asarray(b["y"])) for b in batches]
        timers["PyTorch eager guided step"] = torch_sal.step_timer(family, host, steps)
    t = interleaved(timers, repeats)

    ladder = train_ladder(list(setup.ladder), data, config)
    out = {"name": setup.name, "batch": setup.batch, "times": t, "compiles": loop.compiles,
           "ladder_ratio": ladder.sal_train_time / ladder.plain_epoch_matched.train_time,
           "ladder_compiles": [run.compiles for run in ladder.sal]}
    # Measured on the MLP only: its steps are the shortest, so a save costs it the largest fraction.
    out["checkpoint_ratio"] = checkpoint_overhead(setup, data, config, repeats) if family == "mlp" else None
    return out


def checkpoint_overhead(setup: Setup, data: ArrayDataset, config: ml_collections.ConfigDict, repeats: int) -> float:
    """Training time of a ladder run checkpointed at the default interval / the same run without.

    The data is repeated so that a level runs past the interval: 2 epochs of `every_steps` steps each,
    i.e. two interval saves plus the save at each level's end.
    """
    import tempfile
    every = config.checkpoint.every_steps
    reps = -(-every * setup.batch // len(data.x_train))
    big = ArrayDataset(data.name, np.concatenate([data.x_train] * reps), np.concatenate([data.y_train] * reps),
                       data.x_test, data.y_test, data.num_classes, data.vocab_size)
    ladder = list(setup.ladder[-2:])
    config.baselines.epoch_matched = False

    def run(checkpointed: bool) -> float:
        with tempfile.TemporaryDirectory() as directory:
            result = train_ladder(ladder, big, config, checkpoint_dir=directory if checkpointed else None)
        return result.sal_train_time

    t = interleaved({"with": lambda: run(True), "without": lambda: run(False)}, max(1, repeats // 2))
    return t["with"] / t["without"]


def report(results: dict[str, dict[str, Any]]) -> str:
    lines = ["| family | guided / plain step | guided (cached teacher) / plain step "
             "| loop / jitted step throughput | compiles per level (train, eval) "
             "| SAL ladder / plain bottom wall time | guided step ex/s | plain step ex/s | loop ex/s "
             + "| checkpointed / not, ladder wall time "
             + ("| JAX / PyTorch guided throughput " if "PyTorch eager guided step" in next(iter(results.values()))["times"] else "")
             + "|"]
    lines.append("|" + " --- |" * (lines[0].count("|") - 1))
    for fam, r in results.items():
        t, b = r["times"], r["batch"]
        row = [f"{fam}: {r['name']}", f"{t['guided step'] / t['plain step']:.3f}",
               f"{t['guided step, cached teacher'] / t['plain step']:.3f}",
               f"{t['guided step, cached teacher'] / t['training loop (per step)']:.3f}",
               ", ".join(f"({c['train']}, {c['eval']})" for c in r["ladder_compiles"]),
               f"{r['ladder_ratio']:.2f}", f"{b / t['guided step']:,.0f}", f"{b / t['plain step']:,.0f}",
               f"{b / t['training loop (per step)']:,.0f}", f"{r['checkpoint_ratio']:.3f}" if r["checkpoint_ratio"] else "—"]
        if "PyTorch eager guided step" in t:
            row.append(f"{t['PyTorch eager guided step'] / t['guided step']:.2f}")
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def main(argv):
    del argv
    catalogue = setups()
    results = {}
    for fam in _FAMILIES.value:
        start = time.perf_counter()
        results[fam] = measure_family(fam, catalogue[fam], _REPEATS.value, _STEPS.value, _TORCH.value)
        print(f"{fam}: measured in {time.perf_counter() - start:.0f} s; median seconds per step "
              + ", ".join(f"{k} {v * 1e3:.2f} ms" for k, v in results[fam]["times"].items()), file=sys.stderr)
    print(report(results))
    print(f"\npeak host memory (max RSS): {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB; "
          f"devices: {jax.devices()}; cores available: {len(os.sched_getaffinity(0))}")


if __name__ == "__main__":
    app.run(main)
