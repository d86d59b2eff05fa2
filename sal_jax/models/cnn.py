"""CNN levels: a ladder of conv blocks with growing depth and channels."""
from __future__ import annotations

from typing import Sequence

import flax.linen as nn
import jax


class CNN(nn.Module):
    """Conv blocks (3x3 conv, optional BatchNorm, ReLU, 2x2 max-pool while the map is larger than 1x1),
    then global average pooling and a linear head.

    features[j] is the output of block j+1. With BatchNorm, `train=True` uses batch statistics and
    updates the `batch_stats` collection; `train=False` (evaluation, or a frozen teacher) uses the
    running averages and changes nothing.
    """

    channels: Sequence[int]
    num_classes: int
    batch_norm: bool = True

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> tuple[jax.Array, tuple[jax.Array, ...]]:
        h = x
        features = []
        for i, c in enumerate(self.channels):
            h = nn.Conv(c, (3, 3), use_bias=not self.batch_norm, name=f"conv_{i}")(h)
            if self.batch_norm:
                h = nn.BatchNorm(use_running_average=not train, momentum=0.9, name=f"bn_{i}")(h)
            h = nn.relu(h)
            if h.shape[1] > 1 and h.shape[2] > 1:
                h = max_pool_2x2(h)
            features.append(h)
        h = h.mean(axis=(1, 2))
        return nn.Dense(self.num_classes, name="head")(h), tuple(features)


def max_pool_2x2(h: jax.Array) -> jax.Array:
    """2x2 max-pooling with stride 2 (odd rows/columns dropped, as VALID padding does), as a max over a
    reshape. Same values and gradients as `nn.max_pool(h, (2, 2), strides=(2, 2))`, but XLA on CPU runs
    the reduce_window's gradient (select_and_scatter) slowly: this halves a small CNN's train step there
    (BENCHMARKS.md)."""
    b, height, width, c = h.shape
    h = h[:, : height // 2 * 2, : width // 2 * 2]
    return h.reshape(b, height // 2, 2, width // 2, 2, c).max(axis=(2, 4))
