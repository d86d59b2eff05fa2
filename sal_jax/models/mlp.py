"""MLP levels: a depth ladder at fixed width."""
from __future__ import annotations


import flax.linen as nn
import jax

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
