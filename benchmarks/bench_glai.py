"""Benchmark (not a test): a GLAI level's training steps against the MLP step at equal parameters.

    python benchmarks/bench_glai.py [--hidden_layers=2] [--width=256] [--inputs=784] [--batch=128] [--repeats=7]

A frozen GLAI level of `width` holds twice the hidden weights (structure + values), so the baseline is the
MLP whose parameter count is closest to it (sal_jax.glai.matched_mlp_width: width x the printed factor).
Steps timed, interleaved (A B A B ...), median of `repeats`, each the library's jitted train step:
- "MLP, equal params": the baseline (ReLU);
- "GLAI structure phase": the unfrozen level (a ReLU MLP of `width`);
- "GLAI value phase, cached gates": the gates read from the batch (sal_jax.glai.gate_cache), as
  train_level runs it;
- "GLAI value phase, gates from structure": the frozen structure run in every step (what the cache saves).
Prints a markdown table of seconds per step, ratios to the baseline and XLA's FLOP counts.
"""
from __future__ import annotations

import os
import sys

from absl import app, flags
import jax
import numpy as np
import optax

sys.path.insert(0, os.path.dirname(__file__))
from common import interleaved, step_timer, xla_cost  # noqa: E402
from sal_jax import glai  # noqa: E402
from sal_jax.models import MLP, GlaiMLP  # noqa: E402
from sal_jax.models.mlp import mlp_param_count  # noqa: E402
from sal_jax.models.glai import STRUCTURE  # noqa: E402
from sal_jax.step import init_state, make_train_step  # noqa: E402

_LAYERS = flags.DEFINE_integer("hidden_layers", 2, "Hidden layers of both models.")
_WIDTH = flags.DEFINE_integer("width", 256, "The GLAI level's width.")
_INPUTS = flags.DEFINE_integer("inputs", 784, "Input features.")
_BATCH = flags.DEFINE_integer("batch", 128, "Batch size.")
_STEPS = flags.DEFINE_integer("steps", 100, "Steps per timed repetition.")
_REPEATS = flags.DEFINE_integer("repeats", 7, "Interleaved repetitions.")


def main(argv):
    del argv
    layers, width, inputs, batch = _LAYERS.value, _WIDTH.value, _INPUTS.value, _BATCH.value
    mlp_width = glai.matched_mlp_width(inputs, width, layers, 10)
    rng = np.random.default_rng(0)
    xs = [rng.normal(size=(batch, inputs)).astype(np.float32) for _ in range(4)]
    batches = [{"x": x, "y": rng.integers(0, 10, batch).astype(np.int32), "weight": np.ones(batch, np.float32)}
               for x in xs]
    tx = optax.adam(1e-3)
    level = GlaiMLP(layers, width, 10)
    unfrozen = init_state(level, tx, jax.random.key(0), xs[0])
    structure = glai.freeze({"params": unfrozen.params["model"]})[STRUCTURE]
    frozen = unfrozen.replace(constants={STRUCTURE: structure})
    with_gates = [{**b, **glai.gate_cache(level, {"params": {}, STRUCTURE: structure}, b["x"], batch)}
                  for b in batches]
    mlp = MLP(layers, mlp_width, 10)
    variants = {  # name: (module, initial state, batches)
        "MLP, equal params": (mlp, init_state(mlp, tx, jax.random.key(0), xs[0]), batches),
        "GLAI structure phase": (level, unfrozen, batches),
        "GLAI value phase, cached gates": (level, frozen, with_gates),
        "GLAI value phase, gates from structure": (level, frozen, batches),
    }
    timers, costs = {}, {}
    for name, (module, state, bs) in variants.items():
        step = make_train_step(module, tx)
        device = [jax.device_put(b) for b in bs]
        costs[name] = xla_cost(step, state, None, device[0])
        timers[name] = step_timer(step, jax.tree.map(lambda a: a.copy(), state), None, device, _STEPS.value)
    times = interleaved(timers, _REPEATS.value)
    base = times["MLP, equal params"]
    print(f"GLAI {layers}x{width} ({glai.glai_param_count(inputs, width, layers, 10):,} params frozen) vs MLP "
          f"{layers}x{mlp_width} ({mlp_param_count(inputs, mlp_width, layers, 10):,}): width factor "
          f"{width / mlp_width:.3f}; {inputs} inputs, batch {batch}; {jax.devices()[0].platform}\n")
    print("| step | ms | / MLP step | XLA GFLOP (/ MLP) |\n| --- | --- | --- | --- |")
    for name, seconds in times.items():
        print(f"| {name} | {seconds * 1e3:.3f} | {seconds / base:.3f} | {costs[name]['gflop']:.4f} "
              f"({costs[name]['gflop'] / costs['MLP, equal params']['gflop']:.3f}) |")


if __name__ == "__main__":
    app.run(main)
