"""Compiled-function calls (dispatches) the training loop makes per epoch: a measurement, not a test.

    python benchmarks/dispatch_count.py [--epochs=2] [--steps_per_call=0]

Trains the digits main job's bottom two levels (8x64 and 16x64 tanh MLPs, batch 64, the second one
guided, the teacher cache on) and counts every call of the loop's compiled functions -- the training
and evaluation chunks (sal_jax.chunks) -- and every `jax.device_put` it makes (batch plans, a level's
setup). On a GPU or TPU each call is a host round trip of dispatch overhead, which decides the speed of
small models (issue #11). Before the chunked loop: 73 dispatches an epoch, 3.84 per training step.
"""
from __future__ import annotations

import argparse
import collections
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # sal_jax without installing

import jax  # noqa: E402

from sal_jax import chunks, ladder  # noqa: E402
from sal_jax.config import default_config  # noqa: E402
from sal_jax.data import load_dataset  # noqa: E402
from sal_jax.models import make_ladder  # noqa: E402

CALLS: collections.Counter = collections.Counter()


class Counted:
    """A jitted function that counts its calls under `name` (and otherwise behaves the same)."""

    def __init__(self, name: str, fn):
        self.name, self.fn = name, fn

    def __call__(self, *args, **kwargs):
        CALLS[self.name] += 1
        return self.fn(*args, **kwargs)

    def __getattr__(self, attribute):  # e.g. _cache_size, read by train_level
        return getattr(self.fn, attribute)


def count_calls() -> None:
    """Wraps the loop's compiled functions where train_level looks them up, and jax.device_put."""
    make_train, make_eval = chunks.make_train_chunk, chunks.make_eval_chunk
    chunks.make_train_chunk = lambda *a, **k: Counted("training call", make_train(*a, **k))
    chunks.make_eval_chunk = lambda *a, **k: Counted("evaluation call", make_eval(*a, **k))
    jax.device_put = Counted("device_put (plans, level setup)", jax.device_put)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--steps_per_call", type=int, default=0)
    args = parser.parse_args()
    config = default_config()
    config.model.levels, config.model.width, config.model.activation = (8, 16), 64, "tanh"
    config.train.epochs, config.train.batch_size = args.epochs, 64
    config.train.steps_per_call = args.steps_per_call
    config.baselines.epoch_matched = config.baselines.time_matched = False
    data = load_dataset(config.data)
    count_calls()
    result = ladder.train_ladder(make_ladder(config.model, data.num_classes), data, config)
    epochs = sum(len(run.history) for run in result.sal)
    steps = sum(run.steps for run in result.sal)
    eval_batches = -(-len(data.x_test) // config.train.batch_size)
    print(f"{len(result.sal)} levels x {args.epochs} epochs: {steps // epochs} training steps and "
          f"{eval_batches} evaluation batches an epoch")
    for name, count in sorted(CALLS.items()):
        print(f"  {name}: {count / epochs:.0f} calls an epoch")
    print(f"  all: {sum(CALLS.values()) / epochs:.0f} dispatches an epoch "
          f"({sum(CALLS.values()) / steps:.2f} per training step)")


if __name__ == "__main__":
    main()
