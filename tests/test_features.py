"""sal_jax.features: a Linen module that returns logits, its features named instead of rewritten."""
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from conftest import blobs
from sal_jax.errors import ConfigError
from sal_jax.features import FeaturesByName, natural_key, path_matches
from sal_jax.guidance import make_guidance
from sal_jax.ladder import train_ladder
from sal_jax.step import init_state, make_train_step


class Block(nn.Module):
    width: int

    @nn.compact
    def __call__(self, x):
        return x + nn.relu(nn.Dense(self.width, name="dense")(x))


class ResMLP(nn.Module):
    """A user's residual MLP as written for plain training: logits only."""

    blocks: int
    width: int = 16

    @nn.compact
    def __call__(self, x):
        h = nn.Dense(self.width, name="embed")(x)
        for i in range(self.blocks):
            h = Block(self.width, name=f"block_{i}")(h)
        return nn.Dense(3, name="head")(h)


class ResMLPWithFeatures(ResMLP):
    """The same model rewritten to the (logits, features) contract: what users had to do before."""

    @nn.compact
    def __call__(self, x):
        h, features = nn.Dense(self.width, name="embed")(x), []
        for i in range(self.blocks):
            h = Block(self.width, name=f"block_{i}")(h)
            features.append(h)
        return nn.Dense(3, name="head")(h), tuple(features)


def test_paths_match_component_by_component_and_sort_numbers_as_numbers():
    assert path_matches("block_*", "block_0") and not path_matches("block_*", "block_0/dense")
    assert path_matches("*/dense", "block_3/dense") and not path_matches("block_1", "block_10")
    assert sorted(["block_10", "block_2", "block_1"], key=natural_key) == ["block_1", "block_2", "block_10"]


def test_named_features_are_the_block_outputs_in_depth_order_with_the_bare_models_params():
    """12 blocks (block_10 sorts after block_2 only as a number): the features equal the rewritten model's,
    and the level's variables are exactly the bare model's (a pretrained checkpoint fits as it is)."""
    x = jax.random.normal(jax.random.key(1), (5, 4))
    level = FeaturesByName(ResMLP(12), ("block_*",))
    (logits, features), variables = level.init_with_output(jax.random.key(0), x)
    bare = ResMLP(12).init(jax.random.key(0), x)
    assert jax.tree.all(jax.tree.map(np.array_equal, variables, bare))
    want_logits, want_features = ResMLPWithFeatures(12).apply(bare, x)
    np.testing.assert_array_equal(logits, want_logits)
    assert len(features) == 12
    for got, want in zip(features, want_features):
        np.testing.assert_array_equal(got, want)
    # explicit names keep their order; a name given twice (or by two patterns) counts once
    (_, picked) = FeaturesByName(ResMLP(12), ("block_11", "block_*1", "block_0")).apply(bare, x)
    np.testing.assert_array_equal(picked[0], want_features[11])
    np.testing.assert_array_equal(picked[1], want_features[1])  # block_1 (block_11 already taken)
    np.testing.assert_array_equal(picked[2], want_features[0])
    assert len(picked) == 3


def test_a_name_that_matches_nothing_or_a_non_array_is_a_clear_error():
    x = jnp.ones((2, 4))
    with pytest.raises(ConfigError, match=r"level ResMLP: feature name 'blocks_\*' matches no submodule; its "
                                          r"submodules are \['block_0', 'block_0/dense', 'block_1'"):
        FeaturesByName(ResMLP(2), ("blocks_*",)).init(jax.random.key(0), x)
    with pytest.raises(ConfigError, match=r"features needs one or more module paths"):
        FeaturesByName(ResMLP(2), ()).init(jax.random.key(0), x)


def guided_step_cost(teacher, student, x):
    """XLA's FLOP count of the compiled guided train step, and its output on one batch."""
    tx = optax.adam(1e-3)
    guidance = make_guidance(student, teacher, x, _guidance_config(), total_steps=10)
    teacher_variables = teacher.init(jax.random.key(1), x)
    step = make_train_step(student, tx, guidance)
    state = init_state(student, tx, jax.random.key(0), x, guidance)
    batch = {"x": x, "y": jnp.arange(len(x)) % 3, "weight": jnp.ones(len(x))}
    compiled = step.lower(state, teacher_variables, batch).compile()
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, list) else cost
    return cost["flops"], compiled(state, teacher_variables, batch)


def _guidance_config():
    from sal_jax.config import default_config
    return default_config().guidance


def test_the_guided_step_does_the_same_work_as_the_rewritten_models():
    """One forward pass, no more: the XLA FLOP count of the guided train step (teacher 2 blocks, student 4)
    equals that of the (logits, features) versions, and the step computes the same state and metrics."""
    x = jax.random.normal(jax.random.key(2), (8, 4))
    named = guided_step_cost(FeaturesByName(ResMLP(2), ("block_*",)), FeaturesByName(ResMLP(4), ("block_*",)), x)
    rewritten = guided_step_cost(ResMLPWithFeatures(2), ResMLPWithFeatures(4), x)
    assert named[0] == rewritten[0] > 0
    assert jax.tree.all(jax.tree.map(np.array_equal, named[1], rewritten[1]))


def test_a_ladder_of_named_levels_trains_exactly_as_the_rewritten_ladder(config):
    """Through the whole trainer (SAL, guidance, baselines): the same histories and variables, and each
    level's train step compiled once."""
    config.model.levels, config.train.epochs = (1, 2), 2
    config.baselines.time_matched = False  # its length depends on the clock

    def run(levels):
        return train_ladder(levels, blobs(dim=4), config)

    named = run([FeaturesByName(ResMLP(1), ("block_*",)), FeaturesByName(ResMLP(2), ("block_*",))])
    rewritten = run([ResMLPWithFeatures(1), ResMLPWithFeatures(2)])
    for a, b in zip(named.sal + [named.plain_epoch_matched], rewritten.sal + [rewritten.plain_epoch_matched]):
        assert [{k: v for k, v in row.items() if k != "train_time"} for row in a.history] == \
               [{k: v for k, v in row.items() if k != "train_time"} for row in b.history]
        assert jax.tree.all(jax.tree.map(np.array_equal, a.variables, b.variables))
        assert a.compiles == b.compiles and a.compiles["train"] == 1
