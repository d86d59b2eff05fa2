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
                h = nn.max_pool(h, (2, 2), strides=(2, 2))
            features.append(h)
        h = h.mean(axis=(1, 2))
        return nn.Dense(self.num_classes, name="head")(h), tuple(features)


def cnn_ladder(blocks: Sequence[int], channels: Sequence[int], num_classes: int, batch_norm: bool) -> list[CNN]:
    """Level k has blocks[k] conv blocks with channels[:blocks[k]]: deeper levels add wider blocks."""
    return [CNN(tuple(channels[:b]), num_classes, batch_norm) for b in blocks]
