"""The GLAI level: one module for both phases, its phase given by its variables."""
import jax
import jax.numpy as jnp
import numpy as np

from promises import assert_same_math
from sal_jax.glai import freeze
from sal_jax.models import MLP, GlaiMLP
from sal_jax.models.glai import GATES, STRUCTURE, structure_gates


def setup(hidden_layers=3, width=9, inputs=6, classes=4, batch=16):
    model = GlaiMLP(hidden_layers, width, classes)
    x = jax.random.normal(jax.random.key(0), (batch, inputs))
    return model, model.init(jax.random.key(1), x), x


def test_the_structure_phase_is_a_relu_mlp():
    """Unfrozen, a GLAI level is sal_jax.models.MLP with ReLU, parameter for parameter."""
    model, variables, x = setup()
    mlp = MLP(3, 9, 4, "relu")
    assert jax.tree.structure(variables) == jax.tree.structure(mlp.init(jax.random.key(1), x))
    assert_same_math(model.apply(variables, x), mlp.apply(variables, x), atol=1e-6)


def test_freezing_changes_no_output_bit():
    """At the freeze the value-phase model (gates from the structure copy) gives the same logits and
    features as the structure-phase model, bit for bit: the same ops on the same numbers."""
    model, variables, x = setup()
    frozen = freeze(variables)
    assert set(frozen) == {"params", STRUCTURE} and set(frozen[STRUCTURE]) == {"dense_0", "dense_1", "dense_2"}
    before, after = model.apply(variables, x), jax.jit(model.apply)(frozen, x)
    jax.tree.map(np.testing.assert_array_equal, after, jax.jit(model.apply)(variables, x))
    jax.tree.map(np.testing.assert_array_equal, after, before)


def test_value_phase_gates_come_from_the_structure_not_the_values():
    """Once frozen, changing the values changes the outputs but not which units are on: each feature is
    zero exactly where the structure's gate is off."""
    model, variables, x = setup()
    frozen = freeze(variables)
    moved = {**frozen, "params": jax.tree.map(lambda p: p - 0.5, frozen["params"])}
    gates = structure_gates(frozen[STRUCTURE], x, 3)
    _, features = model.apply(moved, x)
    for gate, feature in zip(gates, features):
        assert np.all(np.asarray(feature)[~np.asarray(gate)] == 0)
        assert np.any(np.asarray(feature)[np.asarray(gate)] < 0)  # a ReLU would never give negatives
    # unfrozen, the same values move the gates too: the patterns differ
    moved_gates = structure_gates(moved["params"], x, 3)
    assert any(np.any(np.asarray(a) != np.asarray(b)) for a, b in zip(gates, moved_gates))


def test_cached_gates_give_the_same_outputs_as_the_structure():
    model, variables, x = setup()
    frozen = freeze(variables)
    moved = {**frozen, "params": jax.tree.map(lambda p: p * 1.3 - 0.1, frozen["params"])}
    gates = {f"dense_{i}": g for i, g in enumerate(structure_gates(frozen[STRUCTURE], x, 3))}
    cached = {"params": moved["params"], GATES: gates}  # no structure at all: the gates are all it needs
    jax.tree.map(np.testing.assert_array_equal, jax.jit(model.apply)(cached, x), jax.jit(model.apply)(moved, x))


def test_no_gradient_reaches_the_structure():
    """The gates are comparisons: the loss has zero gradient with respect to the structure, and a
    nonzero one with respect to the values."""
    model, variables, x = setup()
    frozen = freeze(variables)

    def loss(params, structure):
        logits, _ = model.apply({"params": params, STRUCTURE: structure}, x)
        return jnp.sum(logits ** 2)

    g_values, g_structure = jax.grad(loss, argnums=(0, 1))(frozen["params"], frozen[STRUCTURE])
    assert all(np.all(np.asarray(leaf) == 0) for leaf in jax.tree.leaves(g_structure))
    assert all(np.any(np.asarray(leaf) != 0) for leaf in jax.tree.leaves(g_values))
