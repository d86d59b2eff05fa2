import jax
import jax.numpy as jnp
import numpy as np
import pytest

from promises import MATMUL_RTOL
from sal_jax.config import default_config
from sal_jax.models import MLP, make_ladder


@pytest.mark.parametrize("activation, low, high", [("relu", 0, np.inf), ("tanh", -1, 1), ("sigmoid", 0, 1)])
def test_features_are_each_hidden_layer_after_its_activation(activation, low, high):
    model = MLP(hidden_layers=3, width=7, num_classes=4, activation=activation)
    x = jax.random.normal(jax.random.key(0), (5, 2, 3))  # flattened to 6 inputs
    variables = model.init(jax.random.key(1), x)
    logits, features = model.apply(variables, x)
    assert logits.shape == (5, 4)
    assert [f.shape for f in features] == [(5, 7)] * 3
    assert all(float(f.min()) >= low and float(f.max()) <= high for f in features)
    # the head reads the last feature
    head = variables["params"]["head"]
    # the same matmul inside and outside the module: float32 at the backend's matmul precision
    np.testing.assert_allclose(logits, features[-1] @ head["kernel"] + head["bias"], rtol=MATMUL_RTOL, atol=1e-6)


def test_ladder_from_config_grows_in_depth():
    config = default_config().model
    config.levels, config.width, config.activation = (1, 2, 4), 8, "sigmoid"
    ladder = make_ladder(config, num_classes=10)
    assert [m.hidden_layers for m in ladder] == [1, 2, 4]
    assert {(m.width, m.activation, m.num_classes) for m in ladder} == {(8, "sigmoid", 10)}
    _, features = ladder[2].apply(ladder[2].init(jax.random.key(0), jnp.ones((1, 5))), jnp.ones((1, 5)))
    assert len(features) == 4
