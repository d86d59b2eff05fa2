"""sal_jax.nnx_levels: an nnx.Module as a level, trained by the same functional step as a Linen level."""
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from conftest import blobs
from nnx_models import NnxMLP, NnxResNet, resnet_ladder
from sal_jax.errors import ConfigError
from sal_jax.ladder import train_ladder
from sal_jax.levels import apply_level, init_level
from sal_jax.models import make_ladder
from sal_jax.nnx_levels import from_nnx
from sal_jax.step import init_state


def without_clock(history):
    return [{k: v for k, v in row.items() if k != "train_time"} for row in history]


def test_the_same_mlp_in_linen_and_in_nnx_trains_to_the_same_results(data, config):
    """Each NNX level starts from the params the trainer gives the Linen level (init_state with its key):
    SAL level by level and the plain baseline give the same histories and variables."""
    config.model.levels, config.train.epochs = (1, 2), 2
    config.baselines.time_matched = False  # its length depends on the clock
    linen = make_ladder(config.model, data.num_classes)
    sample_x = jnp.asarray(data.x_train[: config.train.batch_size])
    nnx_levels = []
    for index, (module, depth) in enumerate(zip(linen, config.model.levels)):
        start = init_state(module, optax.identity(), jax.random.fold_in(jax.random.key(config.seed), index + 1),
                           sample_x).params["model"]
        model = NnxMLP(data.x_train.shape[1], depth, config.model.width, data.num_classes, nnx.Rngs(99))
        params = nnx.state(model, nnx.Param)
        nnx.replace_by_pure_dict(params, start)
        nnx.update(model, params)
        nnx_levels.append(from_nnx(model))
    a, b = train_ladder(linen, data, config), train_ladder(nnx_levels, data, config)
    for run_a, run_b in zip(a.sal + [a.plain_epoch_matched], b.sal + [b.plain_epoch_matched]):
        assert without_clock(run_a.history) == without_clock(run_b.history)
        assert jax.tree.all(jax.tree.map(np.array_equal, run_a.variables, run_b.variables))
    assert a.sal[-1].final_test_accuracy > 0.6  # and it learned: chance is 1/3


def test_batchnorm_and_dropout_move_only_while_training():
    """Train mode: BatchNorm normalises with the batch and updates its statistics, Dropout draws a new mask
    each step (its RNG count is state); eval mode (evaluation, a frozen teacher): the running averages, no
    dropout, nothing updated. The level's initial variables are the model's own state."""
    model = NnxResNet(4, 2, 8, 3, nnx.Rngs(0))
    level = from_nnx(model, features=("blocks/*",))
    x = jax.random.normal(jax.random.key(1), (6, 4))
    variables = init_level(level, jax.random.key(5), x)
    np.testing.assert_array_equal(variables["params"]["head"]["kernel"], model.head.kernel[...])
    (logits, features), same = apply_level(level, variables, x, train=False)
    eval_model = nnx.view(model, deterministic=True, use_running_average=True)
    np.testing.assert_allclose(logits, eval_model(x), atol=1e-6)
    assert len(features) == 2 and features[0].shape == (6, 8)
    assert jax.tree.all(jax.tree.map(np.array_equal, same, variables["batch_stats"]))
    step = jax.jit(lambda v: apply_level(level, v, x, train=True))
    (first, _), moved = step(variables)
    (second, _), moved_again = step({**variables, "batch_stats": moved})
    assert int(moved["dropout"]["rngs"]["count"]) == int(variables["batch_stats"]["dropout"]["rngs"]["count"]) + 1
    assert not np.allclose(first, second)  # another dropout mask
    assert not np.allclose(moved["blocks"]["0"]["norm"]["mean"], variables["batch_stats"]["blocks"]["0"]["norm"]["mean"])


def test_features_by_name_equal_the_blocks_outputs():
    """Named features ("blocks/*") are the blocks' outputs, in depth order; a wrong name lists the paths."""
    model = NnxResNet(4, 3, 8, 3, nnx.Rngs(0))
    x = jax.random.normal(jax.random.key(1), (5, 4))
    variables = init_level(from_nnx(model, features=("blocks/*",)), jax.random.key(0), x)
    (_, features), _ = apply_level(from_nnx(model, features=("blocks/*",)), variables, x, train=False)
    eval_model = nnx.view(model, deterministic=True, use_running_average=True)
    h = eval_model.embed(x)
    for block, feature in zip(eval_model.blocks, features):
        h = block(h)
        np.testing.assert_allclose(feature, h, atol=1e-6)
    with pytest.raises(ConfigError, match=r"feature name 'block_\*' matches no submodule; its submodules are "
                                          r"\['blocks/0', 'blocks/0/linear'"):
        init_level(from_nnx(model, features=("block_*",)), jax.random.key(0), x)
    with pytest.raises(ConfigError, match="from_nnx: expected an nnx.Module, got int"):
        from_nnx(3)


def test_an_nnx_ladder_with_batchnorm_and_dropout_learns_and_draws_one_mask_per_step(config):
    """SAL over NNX levels (logits only, features named) learns the task guided by both terms; each level's
    Dropout stream advanced once per training step (12: 3 epochs of 4), never while evaluating or teaching."""
    config.model.levels, config.train.epochs = (1, 2), 3
    config.baselines.time_matched = False
    data = blobs()
    result = train_ladder(resnet_ladder((1, 2), data.x_train.shape[1], 16, data.num_classes), data, config)
    assert result.sal[-1].final_test_accuracy > 0.8 and result.plain_epoch_matched.final_test_accuracy > 0.8
    assert {"train_hidden", "train_output"} <= set(result.sal[-1].history[-1])
    for run in result.sal + [result.plain_epoch_matched]:
        assert int(run.variables["batch_stats"]["dropout"]["rngs"]["count"]) == run.steps == 12
