"""Benchmark (not a test): what sparse (SET / NPSET) levels cost, as masked dense layers.

    python benchmarks/bench_sparse.py [--hidden_layers=2] [--width=1024] [--inputs=784] [--batch=128]

Interleaved (A B A B ...), median of `repeats`, each the library's jitted train step:
- "dense, same width": the MLP whose layers the sparse level masks;
- "sparse (masked dense)": SparseMLP at ε = 20, what the library trains (the same FLOPs as dense plus the
  masks' multiplies: the sparsity saves nothing per step);
- "dense, equal live params": the MLP with about the sparse level's live parameters.
Also the between-epochs step (pruning + evolution, `sal_jax.sparse.between_epochs`) against one epoch of
`--epoch_steps` training steps, and one layer's forward product with `jax.experimental.sparse` (BCOO)
against the masked dense product, at that layer's density.
"""
from __future__ import annotations

import os
import sys
import time

from absl import app, flags
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.experimental import sparse as jsparse

sys.path.insert(0, os.path.dirname(__file__))
from common import interleaved, step_timer, xla_cost  # noqa: E402
from sal_jax import sparse  # noqa: E402
from sal_jax.models import MLP, SparseMLP  # noqa: E402
from sal_jax.models.mlp import width_for_params  # noqa: E402
from sal_jax.models.sparse import MASKS  # noqa: E402
from sal_jax.step import init_state, make_train_step  # noqa: E402

_LAYERS = flags.DEFINE_integer("hidden_layers", 2, "Hidden layers.")
_WIDTH = flags.DEFINE_integer("width", 1024, "Hidden width of the sparse level.")
_INPUTS = flags.DEFINE_integer("inputs", 784, "Input features.")
_BATCH = flags.DEFINE_integer("batch", 128, "Batch size.")
_STEPS = flags.DEFINE_integer("steps", 50, "Steps per timed repetition.")
_EPOCH_STEPS = flags.DEFINE_integer("epoch_steps", 468, "Steps of one epoch (MNIST at batch 128: 468).")
_REPEATS = flags.DEFINE_integer("repeats", 7, "Interleaved repetitions.")


def main(argv):
    del argv
    layers, width, inputs, batch = _LAYERS.value, _WIDTH.value, _INPUTS.value, _BATCH.value
    rng = np.random.default_rng(0)
    batches = [jax.device_put({"x": rng.normal(size=(batch, inputs)).astype(np.float32),
                               "y": rng.integers(0, 10, batch).astype(np.int32), "weight": np.ones(batch, np.float32)})
               for _ in range(4)]
    tx = optax.adam(1e-3)
    level = SparseMLP(layers, width, 10, epsilon=20.0)
    sparse_state = init_state(level, tx, jax.random.key(0), batches[0]["x"])
    live = sparse.live_param_count({"params": sparse_state.params["model"], MASKS: sparse_state.constants[MASKS]})
    matched = width_for_params(live, inputs, layers, 10)
    variants = {"dense, same width": MLP(layers, width, 10), "sparse (masked dense)": level,
                "dense, equal live params": MLP(layers, matched, 10)}
    timers, costs = {}, {}
    for name, module in variants.items():
        state = sparse_state if module is level else init_state(module, tx, jax.random.key(0), batches[0]["x"])
        step = make_train_step(module, tx)
        costs[name] = xla_cost(step, state, None, batches[0])
        timers[name] = step_timer(step, jax.tree.map(lambda a: a.copy(), state), None, batches, _STEPS.value)
    # between epochs: NPSET pruning to half and evolution at zeta 0.3, compiled once
    evolving = sparse.evolving_layers(sparse_state.params["model"], 20.0)
    between = jax.jit(lambda s, key: sparse.between_epochs(tx, evolving, 0.3, s.params, s.constants, s.opt_state, key,
                                                           jnp.full((layers,), width // 2, jnp.int32)))
    state = jax.tree.map(lambda a: a.copy(), sparse_state)

    def evolution() -> float:
        start = time.perf_counter()
        jax.block_until_ready(between(state, jax.random.key(1)))
        return time.perf_counter() - start
    timers["between epochs (one call)"] = evolution
    # one hidden layer's forward product: BCOO against the masked dense kernel
    kernel = sparse_state.params["model"]["dense_1"]["kernel"] if layers > 1 else sparse_state.params["model"]["dense_0"]["kernel"]
    mask = (sparse_state.constants[MASKS]["dense_1" if layers > 1 else "dense_0"]["kernel"])
    h = jnp.asarray(rng.normal(size=(batch, kernel.shape[0])).astype(np.float32))
    bcoo = jsparse.BCOO.fromdense(kernel * mask)
    dense_product = jax.jit(lambda h, k, m: h @ (k * m))
    sparse_product = jax.jit(lambda h, k: h @ k)

    def timed(fn, *args) -> float:
        start = time.perf_counter()
        for _ in range(_STEPS.value):
            out = fn(*args)
        jax.block_until_ready(out)
        return (time.perf_counter() - start) / _STEPS.value
    timers["layer product, masked dense"] = lambda: timed(dense_product, h, kernel, mask)
    timers["layer product, BCOO"] = lambda: timed(sparse_product, h, bcoo)
    times = interleaved(timers, _REPEATS.value)
    base = times["dense, same width"]
    print(f"{layers}x{width} hidden, {inputs} inputs, batch {batch}, epsilon 20: {live:,} live params of "
          f"{sum(np.size(p) for p in jax.tree.leaves(sparse_state.params['model'])):,}; equal-params dense width "
          f"{matched}; layer density {float(mask.mean()):.3f}; {jax.devices()[0].platform}\n")
    print("| step | ms | / dense step, same width | XLA GFLOP |\n| --- | --- | --- | --- |")
    for name in variants:
        print(f"| {name} | {times[name] * 1e3:.3f} | {times[name] / base:.3f} | {costs[name]['gflop']:.4f} |")
    epoch = _EPOCH_STEPS.value * times["sparse (masked dense)"]
    print(f"\nbetween epochs: {times['between epochs (one call)'] * 1e3:.2f} ms, "
          f"{times['between epochs (one call)'] / (epoch + times['between epochs (one call)']):.2%} of an epoch of "
          f"{_EPOCH_STEPS.value} sparse steps")
    print(f"one layer's forward product: masked dense {times['layer product, masked dense'] * 1e3:.3f} ms, BCOO "
          f"{times['layer product, BCOO'] * 1e3:.3f} ms (BCOO / masked dense "
          f"{times['layer product, BCOO'] / times['layer product, masked dense']:.2f})")


if __name__ == "__main__":
    app.run(main)
