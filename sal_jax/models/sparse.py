"""Sparse MLP levels (SET / NPSET, arXiv 1906.11626): Dense layers whose kernels are masked, and hidden
units that can be pruned.

Each layer's mask lives in the variable collection "masks" beside its params, mirroring them:
masks["dense_i"]["kernel"] (0/1, the kernel's shape) and, for hidden layers, masks["dense_i"]["units"]
(0/1 per output unit; 0 = pruned). The masks are not trained and not in the optimizer (training keeps
them in TrainState.constants); sal_jax.sparse changes them between epochs (evolution, neuron pruning).
At initialisation each kernel mask is an Erdős–Rényi graph of density min(1, ε (n_in + n_out) /
(n_in n_out)), and the kernel is zero wherever its mask is: a masked weight gets a zero gradient, so
it stays exactly zero under Adam, SGD and weight decay.
"""
from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from sal_jax.models.mlp import ACTIVATIONS

MASKS = "masks"


def erdos_renyi_density(n_in: int, n_out: int, epsilon: float) -> float:
    return min(1.0, epsilon * (n_in + n_out) / (n_in * n_out))


class MaskedDense(nn.Module):
    """A Dense layer whose kernel is multiplied by its mask; a hidden layer also has a per-unit mask
    (`with_units`), returned for the caller to apply after the activation."""

    features: int
    epsilon: float
    with_units: bool

    @nn.compact
    def __call__(self, x: jax.Array) -> tuple[jax.Array, jax.Array | None]:
        shape = (x.shape[-1], self.features)
        density = erdos_renyi_density(*shape, self.epsilon)
        mask = self.variable(MASKS, "kernel", lambda: jax.random.bernoulli(
            self.make_rng("params"), density, shape).astype(jnp.float32)).value
        kernel = self.param("kernel", lambda key, s: nn.initializers.lecun_normal()(key, s) * mask, shape)
        bias = self.param("bias", nn.initializers.zeros_init(), (self.features,))
        units = (self.variable(MASKS, "units", lambda: jnp.ones((self.features,), jnp.float32)).value
                 if self.with_units else None)
        return x @ (kernel * mask) + bias, units


class SparseMLP(nn.Module):
    """`hidden_layers` masked Dense + activation blocks of `width` units, then a masked linear head.
    Returns (logits, features), features[j] being hidden block j+1's output, exactly zero at pruned units
    (whatever their bias and activation)."""

    hidden_layers: int
    width: int
    num_classes: int
    activation: str = "relu"
    epsilon: float = 20.0

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> tuple[jax.Array, tuple[jax.Array, ...]]:
        del train  # no dropout or normalisation
        act = ACTIVATIONS[self.activation]
        h = x.reshape(x.shape[0], -1)
        features = []
        for i in range(self.hidden_layers):
            z, units = MaskedDense(self.width, self.epsilon, with_units=True, name=f"dense_{i}")(h)
            h = act(z) * units
            features.append(h)
        logits, _ = MaskedDense(self.num_classes, self.epsilon, with_units=False, name="head")(h)
        return logits, tuple(features)
