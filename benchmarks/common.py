"""What the benchmarks share: the teacher/student pairs of each family, synthetic data shaped for them,
and timers. No flags here, so every benchmark script can import it.
"""
from __future__ import annotations

import dataclasses
import statistics
import time
from typing import Any, Callable

import jax
import ml_collections
import numpy as np

from sal_jax.config import default_config
from sal_jax.data.arrays import ArrayDataset
from sal_jax.guidance import Guidance
from sal_jax.host_memory import keep_freed_host_memory
from sal_jax.models import CNN, MLP, RNN, TextTransformer, ViT
from sal_jax.step import TrainState, init_state, make_train_step

# As the CLI does: without it, XLA's CPU steps re-fault their large temporaries every step, and the
# CNN and GRU steps take 1.4-1.8x longer (sal_jax/host_memory.py). PyTorch's reference gets it too.
keep_freed_host_memory()


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
    timed_steps: int = 10  # steps per timed repetition: enough for ~0.3 s, so that one sample is not noise


def setups() -> dict[str, Setup]:
    images = lambda shape: (lambda rng, n: rng.normal(size=(n, *shape)).astype(np.float32))
    # Token ids padded to 32 with 0; real lengths uniform in [shortest, 32].
    tokens = lambda shortest: (lambda rng, n: np.where(np.arange(32) < rng.integers(shortest, 33, (n, 1)),
                                                       rng.integers(2, 5000, (n, 32)), 0).astype(np.int32))
    gru_pair = (RNN(1, 128, 5000, 6), RNN(2, 128, 5000, 6), (RNN(1, 128, 5000, 6), RNN(2, 128, 5000, 6),
                                                            RNN(3, 128, 5000, 6)), 128)
    return {
        "mlp": Setup("MLP 4x256 -> 8x256, 784 inputs", MLP(4, 256, 10), MLP(8, 256, 10),
                     (MLP(2, 256, 10), MLP(4, 256, 10), MLP(8, 256, 10)), 128, images((784,)), timed_steps=100),
        "cnn": Setup("CNN (16,32) -> (16,32,64) + BatchNorm, 32x32x3", CNN((16, 32), 10), CNN((16, 32, 64), 10),
                     (CNN((16,), 10), CNN((16, 32), 10), CNN((16, 32, 64), 10)), 128, images((32, 32, 3))),
        "rnn": Setup("GRU 1x128 -> 2x128, 4-32 tokens padded to 32, vocab 5000", *gru_pair, tokens(4), 6),
        # Small models, where per-step dispatch and host work decide the loop's speed (issue #11): a 1x32
        # MLP at batch 32, and the main job's 16x64 tanh bottom level at batch 64 (digits-sized inputs).
        "mlp_tiny": Setup("MLP 1x16 -> 1x32, batch 32, 64 inputs", MLP(1, 16, 10), MLP(1, 32, 10),
                          (MLP(1, 16, 10), MLP(1, 32, 10)), 32, images((64,)), timed_steps=2000),
        "mlp_main": Setup("MLP 8x64 -> 16x64 tanh, batch 64, 64 inputs", MLP(8, 64, 10, "tanh"),
                          MLP(16, 64, 10, "tanh"), tuple(MLP(d, 64, 10, "tanh") for d in (2, 4, 8, 16)), 64,
                          images((64,)), timed_steps=500),
        # The same without padding: PyTorch's packed sequences skip padded steps, a fixed-shape scan cannot.
        "rnn_unpadded": Setup("GRU 1x128 -> 2x128, 32 tokens, no padding", *gru_pair, tokens(32), 6),
        # Transformer levels (issue #16): the TREC-sized text encoder and the CIFAR-10 ViT of the experiments.
        "transformer": Setup("Text Transformer 2 -> 4 blocks, dim 64, 4 heads, 4-32 tokens padded to 32, vocab 5000",
                             TextTransformer(2, 5000, 6), TextTransformer(4, 5000, 6),
                             tuple(TextTransformer(d, 5000, 6) for d in (1, 2, 4)), 64, tokens(4), 6),
        "vit": Setup("ViT 2 -> 4 blocks, dim 64, 4 heads, patch 4, 32x32x3", ViT(2, 10), ViT(4, 10),
                     tuple(ViT(d, 10) for d in (1, 2, 4)), 128, images((32, 32, 3))),
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


def device_batches(setup: Setup, data: ArrayDataset, count: int = 4) -> list[dict[str, jax.Array]]:
    """The first `count` training batches, on device, for timing steps without an input pipeline."""
    b = setup.batch
    return [jax.device_put({"x": data.x_train[i * b:(i + 1) * b], "y": data.y_train[i * b:(i + 1) * b],
                            "weight": np.ones(b, np.float32)}) for i in range(count)]


def host_batches(batches: list[dict[str, jax.Array]]) -> list[tuple[np.ndarray, np.ndarray]]:
    """The same batches as (x, y) NumPy pairs, for the PyTorch reference."""
    return [(np.asarray(b["x"]), np.asarray(b["y"])) for b in batches]


def step_variant(setup: Setup, tx: Any, guidance: Guidance | None, teacher_vars: Any, x0: jax.Array
                 ) -> tuple[Callable, TrainState, Any]:
    """The student's jitted train step under `guidance` (None = plain), a fresh state for it, and the
    teacher variables it takes (None when plain)."""
    step = make_train_step(setup.student, tx, guidance)
    state = init_state(setup.student, tx, jax.random.key(0), x0, guidance)
    return step, state, (teacher_vars if guidance is not None else None)


def xla_cost(step: Callable, *args: Any) -> dict[str, float]:
    """XLA's own count of a compiled step's work: {"gflop", "mb"} (floating-point operations, bytes
    accessed). Deterministic, so it explains timing ratios on a noisy machine. XLA counts the body of a
    loop (an RNN's scan over time) once, not once per iteration."""
    cost = step.lower(*args).compile().cost_analysis()
    cost = cost[0] if isinstance(cost, list) else cost
    return {"gflop": cost.get("flops", 0.0) / 1e9, "mb": cost.get("bytes accessed", 0.0) / 1e6}
