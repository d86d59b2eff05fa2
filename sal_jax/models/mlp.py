"""MLP levels: a depth ladder at fixed width."""
from __future__ import annotations

import flax.linen as nn
import jax
import numpy as np

ACTIVATIONS = {"relu": nn.relu, "tanh": nn.tanh, "sigmoid": nn.sigmoid, "gelu": nn.gelu}


class MLP(nn.Module):
    """`hidden_layers` Dense+activation blocks then a linear head.

    Returns (logits, features) where features[j] is the output of hidden block j+1. No normalisation, on
    purpose: the deep sigmoid/tanh MLP is the vanishing-gradient regime SAL is meant to help with.
    """

    hidden_layers: int
    width: int
    num_classes: int
    activation: str = "relu"

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> tuple[jax.Array, tuple[jax.Array, ...]]:
        del train  # no dropout or normalisation
        act = ACTIVATIONS[self.activation]
        h = x.reshape(x.shape[0], -1)
        features = []
        for i in range(self.hidden_layers):
            h = act(nn.Dense(self.width, name=f"dense_{i}")(h))
            features.append(h)
        return nn.Dense(self.num_classes, name="head")(h), tuple(features)


def mlp_param_count(in_dim: int, width: int, hidden_layers: int, num_classes: int) -> int:
    """Parameters of MLP(hidden_layers, width, num_classes) on in_dim inputs."""
    return (in_dim + 1) * width + (hidden_layers - 1) * (width + 1) * width + (width + 1) * num_classes


def width_for_params(target: float, in_dim: int, hidden_layers: int, num_classes: int) -> int:
    """The MLP width whose parameter count is closest to `target`: an equal-parameter dense baseline."""
    widths = np.arange(1, 8192)
    counts = np.array([mlp_param_count(in_dim, int(w), hidden_layers, num_classes) for w in widths])
    return int(widths[np.argmin(np.abs(counts - target))])
