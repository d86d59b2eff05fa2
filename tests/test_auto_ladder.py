"""sal_jax.auto_ladder: the levels built from the model the user wants to train."""
import jax.numpy as jnp
import pytest
from flax import nnx

from nnx_models import NnxResNet
from sal_jax.auto_ladder import halving_depths, ladder_from
from sal_jax.errors import ConfigError
from sal_jax.features import FeaturesByName
from sal_jax.levels import num_params
from sal_jax.models import MLP
from sal_jax.nnx_levels import NnxLevel
from test_features import ResMLP


def test_depths_halve_down_to_one_or_two_blocks_simplest_first():
    assert halving_depths(16) == (2, 4, 8, 16)
    assert halving_depths(12) == (1, 3, 6, 12)
    assert halving_depths(24) == (1, 3, 6, 12, 24)
    assert halving_depths(2) == (2,) and halving_depths(1) == (1,)
    with pytest.raises(ConfigError, match="depth must be >= 1, got 0"):
        halving_depths(0)


def test_linen_and_nnx_constructors_give_levels_of_the_depths_asked():
    x = jnp.ones((2, 4))
    linen = ladder_from(lambda depth: ResMLP(depth), 8, features=("block_*",), sample_x=x)
    assert [level.model.blocks for level in linen] == [2, 4, 8] and all(isinstance(l, FeaturesByName) for l in linen)
    counts = [num_params(level, x) for level in linen]
    assert counts == sorted(counts) and len(set(counts)) == 3
    built = []

    def nnx_net(depth):
        built.append(depth)
        return NnxResNet(4, depth, 8, 3, nnx.Rngs(depth))
    levels = ladder_from(nnx_net, depths=(1, 3), features=("blocks/*",), sample_x=x)
    assert built == [1, 3] and all(isinstance(level, NnxLevel) for level in levels)
    # a model that returns (logits, features) itself is a level as it is; widths reach the constructor
    plain = ladder_from(lambda depth, width: MLP(depth, width, 3), depths=(1, 1), widths=(8, 16), sample_x=x)
    assert [(level.hidden_layers, level.width) for level in plain] == [(1, 8), (1, 16)]


def test_a_ladder_that_does_not_grow_or_is_asked_for_badly_is_refused():
    x = jnp.ones((2, 4))
    with pytest.raises(ConfigError, match=r"level 2 \(MLP, 67 params\) is not larger than level 1 \(139 params\)"):
        ladder_from(lambda depth, width: MLP(depth, width, 3), depths=(2, 1), widths=(8, 8), sample_x=x)
    with pytest.raises(ConfigError, match="give the target depth or the list of depths, not both"):
        ladder_from(lambda depth: MLP(depth, 8, 3), 4, depths=(1, 2))
    with pytest.raises(ConfigError, match=r"widths needs one value per level \(2\), got 1"):
        ladder_from(lambda depth, width: MLP(depth, width, 3), 4, widths=(8,))
    with pytest.raises(ConfigError, match="the constructor returned int, not a flax.linen or flax.nnx Module"):
        ladder_from(lambda depth: depth, 4)
