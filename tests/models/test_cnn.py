import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sal_jax.config import default_config
from sal_jax.models import CNN, make_ladder
from sal_jax.models.cnn import max_pool_2x2


def test_blocks_halve_space_and_grow_channels():
    model = CNN(channels=(4, 8, 16), num_classes=5, batch_norm=True)
    x = jnp.ones((2, 8, 8, 3))
    variables = model.init(jax.random.key(0), x)
    logits, features = model.apply(variables, x)
    assert logits.shape == (2, 5)
    assert [f.shape for f in features] == [(2, 4, 4, 4), (2, 2, 2, 8), (2, 1, 1, 16)]
    assert set(variables) == {"params", "batch_stats"}


def test_pooling_stops_at_one_pixel():
    model = CNN(channels=(2, 2, 2, 2), num_classes=3, batch_norm=False)
    x = jnp.ones((1, 4, 4, 1))
    _, features = model.apply(model.init(jax.random.key(0), x), x)
    assert [f.shape[1:3] for f in features] == [(2, 2), (1, 1), (1, 1), (1, 1)]


def test_train_mode_updates_batch_stats_eval_mode_does_not():
    model = CNN(channels=(4,), num_classes=2, batch_norm=True)
    x = jax.random.normal(jax.random.key(0), (4, 4, 4, 1)) + 3.0
    variables = model.init(jax.random.key(1), x)
    _, updates = model.apply(variables, x, train=True, mutable=["batch_stats"])
    assert float(jnp.abs(updates["batch_stats"]["bn_0"]["mean"]).sum()) > 0
    _, unchanged = model.apply(variables, x, train=False, mutable=["batch_stats"])
    assert jax.tree.all(jax.tree.map(jnp.array_equal, unchanged["batch_stats"], variables["batch_stats"]))


def test_ladder_from_config_uses_a_prefix_of_the_channels():
    config = default_config().model
    config.family, config.levels, config.channels, config.batch_norm = "cnn", (1, 2, 3), (8, 16, 32), False
    assert [m.channels for m in make_ladder(config, 10)] == [(8,), (8, 16), (8, 16, 32)]


@pytest.mark.parametrize("shape", [(2, 8, 8, 3), (2, 7, 5, 4), (1, 2, 2, 1)])
def test_reshape_max_pool_matches_flax_max_pool_in_values_and_gradients(shape):
    x = jax.random.normal(jax.random.key(0), shape)  # no ties: both gradients pick the same element
    cotangent = jax.random.normal(jax.random.key(1), (shape[0], shape[1] // 2, shape[2] // 2, shape[3]))
    flax_pool = lambda h: nn.max_pool(h, (2, 2), strides=(2, 2))
    for pool in (jax.jit(max_pool_2x2), max_pool_2x2):  # a max rounds nothing: bitwise on every backend
        np.testing.assert_array_equal(pool(x), flax_pool(x))
        grad = jax.vjp(pool, x)[1](cotangent)[0]
        np.testing.assert_array_equal(grad, jax.vjp(flax_pool, x)[1](cotangent)[0])
