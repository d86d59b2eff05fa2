"""Sparse MLP levels: Erdős–Rényi masks beside the params, masked weights that stay zero."""
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from sal_jax.models import SparseMLP
from sal_jax.models.sparse import MASKS, erdos_renyi_density
from sal_jax.step import init_state, make_train_step


def test_masks_are_erdos_renyi_and_mirror_the_params():
    model = SparseMLP(2, 100, 10, epsilon=20.0)
    variables = model.init(jax.random.key(0), jnp.ones((1, 784)))
    masks, params = variables[MASKS], variables["params"]
    assert set(masks) == set(params) == {"dense_0", "dense_1", "head"}
    for name, (n_in, n_out) in {"dense_0": (784, 100), "dense_1": (100, 100), "head": (100, 10)}.items():
        mask = np.asarray(masks[name]["kernel"])
        assert mask.shape == (n_in, n_out) and set(np.unique(mask)) <= {0.0, 1.0}
        density = erdos_renyi_density(n_in, n_out, 20.0)
        assert abs(mask.mean() - density) < 4 * np.sqrt(density * (1 - density) / mask.size) + 1e-9
        assert np.all(np.asarray(params[name]["kernel"])[mask == 0] == 0)  # zero where masked, from the start
    assert erdos_renyi_density(100, 10, 20.0) == 1.0  # a small layer is dense
    assert np.all(np.asarray(masks["dense_0"]["units"]) == 1) and "units" not in masks["head"]


@pytest.mark.parametrize("optimizer", [optax.adam(1e-2), optax.adamw(1e-2, weight_decay=0.1), optax.sgd(0.1, 0.9)])
def test_masked_weights_stay_exactly_zero_and_contribute_nothing(optimizer):
    model = SparseMLP(2, 32, 3, epsilon=2.0)
    x = jax.random.normal(jax.random.key(1), (16, 20))
    batch = {"x": x, "y": jnp.arange(16) % 3, "weight": jnp.ones(16)}
    state = init_state(model, optimizer, jax.random.key(2), x)
    masks = jax.tree.map(np.array, state.constants[MASKS])  # a copy: the step donates the state
    step = make_train_step(model, optimizer)
    for _ in range(5):
        state, _ = step(state, None, batch)
    params = state.params["model"]
    jax.tree.map(np.testing.assert_array_equal, state.constants[MASKS], masks)  # the step never changes them
    for name in params:
        kernel, mask = np.asarray(params[name]["kernel"]), np.asarray(masks[name]["kernel"])
        assert np.all(kernel[mask == 0] == 0) and np.any(kernel[mask == 1] != 0)
    # the output is the dense computation with the masked kernels: the masked entries count for nothing
    h = np.asarray(x)
    for name in ("dense_0", "dense_1"):
        h = np.maximum(h @ np.asarray(params[name]["kernel"]) + np.asarray(params[name]["bias"]), 0)
    logits, _ = model.apply({"params": params, MASKS: masks}, x)
    np.testing.assert_allclose(logits, h @ np.asarray(params["head"]["kernel"]) + np.asarray(params["head"]["bias"]),
                               rtol=1e-5, atol=1e-5)


def test_a_pruned_unit_outputs_zero_whatever_its_bias_and_activation():
    model = SparseMLP(1, 4, 2, activation="sigmoid", epsilon=100.0)
    x = jnp.ones((3, 5))
    variables = model.init(jax.random.key(0), x)
    units = jnp.array([1.0, 0.0, 1.0, 0.0])
    masks = {**variables[MASKS], "dense_0": {**variables[MASKS]["dense_0"], "units": units}}
    _, (feature,) = model.apply({**variables, MASKS: masks}, x)
    assert np.all(np.asarray(feature)[:, [1, 3]] == 0) and np.all(np.asarray(feature)[:, [0, 2]] > 0)
