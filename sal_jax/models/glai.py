"""GLAI levels (GreenLightningAI, arXiv 2510.00883): a ReLU MLP whose structure is frozen once it is stable.

A ReLU unit's gate for an input is whether it is on (pre-activation > 0); the gates of all units are the
input's activation pattern, the *structure*; the weights are the *values*. A GLAI level has two phases:

1. Structure phase: an ordinary ReLU MLP (the gates come from the level's own pre-activations).
2. Value phase: the gates come from a frozen copy of the hidden layers taken at the freeze, the variable
   collection "structure" (not trained, not in the optimizer); the trained "params" are the values:
   h_l = g_l(x) * (W_l h_{l-1} + b_l). For fixed gates the output is a sum over active input-to-output paths
   of products of value weights (the paper's "combination of paths").

The phase is given by the variables, not the module: with a "structure" collection the level is frozen.
The gates of a frozen level depend on the input only, so training can compute them once per example and
pass them in the collection "gates" ({"dense_i": bool (batch, width)}); the step then does no structure
forward at all (sal_jax.glai.gate_cache). The same module serves both phases: `sal_jax.glai.freeze` turns
phase-1 variables into phase-2 variables whose outputs are bitwise the same.
"""
from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

STRUCTURE = "structure"  # the frozen hidden layers that compute the gates: {"dense_i": {"kernel", "bias"}}
GATES = "gates"          # per-example gates computed once: {"dense_i": bool (batch, width)}


def gated(z: jax.Array, gate: jax.Array) -> jax.Array:
    """ReLU with an explicit gate: z where the gate is on, else 0. With gate = z > 0 it is relu(z), bit for
    bit (a where, not a product: -0.0 and NaN stay out)."""
    return jnp.where(gate, z, jnp.zeros((), z.dtype))


def structure_gates(structure: dict, x: jax.Array, hidden_layers: int) -> list[jax.Array]:
    """The activation pattern of `x` under the frozen structure: one bool (batch, width) per hidden layer."""
    h, gates = x.reshape(x.shape[0], -1), []
    for i in range(hidden_layers):
        layer = structure[f"dense_{i}"]
        z = h @ layer["kernel"] + layer["bias"]
        gates.append(z > 0)
        h = gated(z, gates[-1])
    return gates


class GlaiMLP(nn.Module):
    """`hidden_layers` gated Dense blocks of `width` units, then a linear head. Returns (logits, features),
    features[j] being the (gated) output of hidden block j+1, as for sal_jax.models.MLP with ReLU: in the
    structure phase the two are the same function of the same parameters."""

    hidden_layers: int
    width: int
    num_classes: int

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> tuple[jax.Array, tuple[jax.Array, ...]]:
        del train  # no dropout or normalisation
        h = x.reshape(x.shape[0], -1)
        names = [f"dense_{i}" for i in range(self.hidden_layers)]
        if self.has_variable(GATES, names[0]):        # value phase, gates cached per example
            gates = [self.get_variable(GATES, name) for name in names]
        elif self.has_variable(STRUCTURE, names[0]):  # value phase, gates from the frozen structure
            structure = {name: self.get_variable(STRUCTURE, name) for name in names}
            gates = structure_gates(structure, h, self.hidden_layers)
        else:                                         # structure phase: an ordinary ReLU MLP
            gates = None
        features = []
        for i, name in enumerate(names):
            z = nn.Dense(self.width, name=name)(h)
            h = gated(z, z > 0 if gates is None else gates[i])
            features.append(h)
        return nn.Dense(self.num_classes, name="head")(h), tuple(features)
