"""Benchmark (not a test): what SAL's guidance, the training loop and the ladder cost, and JAX vs PyTorch.

    python benchmarks/bench_sal.py [--families=mlp,cnn,rnn,rnn_unpadded] [--torch] [--repeats=5]

Every number is a ratio of two measurements taken in the same run, interleaved (A B A B ...) and
summarised by the median, because these machines are noisy. Prints a markdown report. The training
loop uses the teacher cache (the default without augmentation), so it is compared with the cached step.
"""
from __future__ import annotations

import os
import resource
import sys
import time
from typing import Any

from absl import app, flags
import jax
import ml_collections
import numpy as np
import optax

from common import (Setup, bench_config, dataset, device_batches, host_batches, interleaved, setups, step_timer,
                    step_variant, xla_cost)
from sal_jax.data.arrays import ArrayDataset
from sal_jax.determinism import determinism_enabled, enable_determinism
from sal_jax.guidance import make_guidance
from sal_jax.ladder import train_ladder
from sal_jax.level_loop import train_level
from sal_jax.teacher_cache import teacher_cache

_FAMILIES = flags.DEFINE_list("families", ["mlp", "cnn", "rnn", "rnn_unpadded"],
                             "Level families to measure (also: mlp_tiny, mlp_main, transformer, vit; "
                             "benchmarks/common.py).")
_TORCH = flags.DEFINE_bool("torch", False, "Also measure the PyTorch eager reference (needs torch).")
_REPEATS = flags.DEFINE_integer("repeats", 5, "Interleaved repetitions per measurement.")
_STEPS = flags.DEFINE_integer("steps", 0, "Steps per timed repetition; 0 = the family's own (~0.3 s).")
_DETERMINISTIC = flags.DEFINE_bool("deterministic", False, "Measure with config.deterministic's switch on "
                                   "(a process-wide setting: compare two runs, one with and one without).")


def measure_family(family: str, setup: Setup, repeats: int, steps: int, with_torch: bool) -> dict[str, Any]:
    config = bench_config(setup)
    data = dataset(setup, setup.batch * 16)
    batches = device_batches(setup, data)
    x0 = batches[0]["x"]
    tx = optax.adam(1e-3)
    teacher_vars = dict(setup.teacher.init(jax.random.key(1), x0))
    guidance = make_guidance(setup.student, setup.teacher, x0, config.guidance, 1000)
    cached_batches = [{**b, **jax.device_put(teacher_cache(guidance, teacher_vars, np.asarray(b["x"]), setup.batch))}
                      for b in batches]
    # (guidance, batches) of each step variant; the two single-term ones show where the cached overhead goes.
    variants = {"guided step": (guidance, batches), "guided step, cached teacher": (guidance, cached_batches),
                "cached, hidden term only": (one_term(setup, config, x0, "output_weight"), cached_batches),
                "cached, output term only": (one_term(setup, config, x0, "hidden_weight"), cached_batches),
                "plain step": (None, batches)}
    timers, costs = {}, {}
    for name, (g, bs) in variants.items():
        step, state, teacher = step_variant(setup, tx, g, teacher_vars, x0)
        costs[name] = xla_cost(step, state, teacher, bs[0])
        timers[name] = step_timer(step, state, teacher, bs, steps)

    def loop() -> float:  # one real epoch of train_level (input pipeline, transfers, metrics, cache included)
        run = train_level(setup.student, data, config, level=2, epochs=2, teacher=(setup.teacher, teacher_vars))
        loop.compiles = run.compiles
        return (run.history[1]["train_time"] - run.history[0]["train_time"]) / (len(data.x_train) // setup.batch)
    timers["training loop (per step)"] = loop

    if with_torch:
        import torch_sal  # optional: only the benchmark needs torch
        if family in torch_sal.PAIRS:
            timers["PyTorch eager guided step"] = torch_sal.step_timer(family, host_batches(batches), steps)
    t = interleaved(timers, repeats)

    ladder = train_ladder(list(setup.ladder), data, config)
    out = {"name": setup.name, "batch": setup.batch, "times": t, "costs": costs, "compiles": loop.compiles,
           "ladder_ratio": ladder.sal_train_time / ladder.plain_epoch_matched.train_time,
           "ladder_compiles": [run.compiles for run in ladder.sal]}
    # Measured on the MLP only: its steps are the shortest, so a save costs it the largest fraction.
    out["checkpoint_ratio"] = checkpoint_overhead(setup, data, config, repeats) if family == "mlp" else None
    return out


def one_term(setup: Setup, config: ml_collections.ConfigDict, x0: jax.Array, zero: str):
    """The benchmark's guidance with one of its two terms switched off (`zero` = its weight's key)."""
    guidance_config = config.guidance.copy_and_resolve_references()
    guidance_config[zero] = 0.0
    return make_guidance(setup.student, setup.teacher, x0, guidance_config, 1000)


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
    return "\n".join(lines) + "\n\n" + profile(results)


def profile(results: dict[str, dict[str, Any]]) -> str:
    """Where the guided step's extra time goes: each step variant's time, and XLA's count of its work,
    both relative to the plain step."""
    names = [k for k in next(iter(results.values()))["costs"] if k != "plain step"]
    lines = ["| family | step | time / plain | XLA GFLOP (/ plain) | XLA MB accessed (/ plain) |",
             "| --- | --- | --- | --- | --- |"]
    for fam, r in results.items():
        t, c, p = r["times"], r["costs"], r["costs"]["plain step"]
        lines.append(f"| {fam} | plain step | 1.000 | {p['gflop']:.3f} | {p['mb']:.1f} |")
        for name in names:
            lines.append(f"| {fam} | {name} | {t[name] / t['plain step']:.3f} | {c[name]['gflop']:.3f} "
                         f"({c[name]['gflop'] / p['gflop']:.3f}) | {c[name]['mb']:.1f} ({c[name]['mb'] / p['mb']:.3f}) |")
    return "\n".join(lines)


def main(argv):
    del argv
    if _DETERMINISTIC.value:
        enable_determinism()  # before anything below starts the backend
    catalogue = setups()
    results = {}
    for fam in _FAMILIES.value:
        start = time.perf_counter()
        setup = catalogue[fam]
        results[fam] = measure_family(fam, setup, _REPEATS.value, _STEPS.value or setup.timed_steps, _TORCH.value)
        print(f"{fam}: measured in {time.perf_counter() - start:.0f} s; median seconds per step "
              + ", ".join(f"{k} {v * 1e3:.2f} ms" for k, v in results[fam]["times"].items()), file=sys.stderr)
    print(report(results))
    print(f"\npeak host memory (max RSS): {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB; "
          f"devices: {jax.devices()}; cores available: {len(os.sched_getaffinity(0))}; "
          f"deterministic: {determinism_enabled()}")


if __name__ == "__main__":
    app.run(main)
