"""A level family registered from outside sal_jax (sal_jax.families) gets everything a built-in one does:
its config checks, a ladder run with checkpoints and resuming, load_level, and its parameter count."""
from __future__ import annotations

import os
import shutil

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import blobs
from sal_jax import families, train_ladder
from sal_jax.checkpoint import load_level
from sal_jax.config import default_config
from sal_jax.errors import ConfigError
from sal_jax.levels import num_params, predict
from sal_jax.models import make_ladder, make_level
from sal_jax.report import param_count


class TinyNet(nn.Module):
    """One tanh layer of `width` units: a level of the test's own family."""

    width: int
    num_classes: int

    @nn.compact
    def __call__(self, x):
        h = nn.tanh(nn.Dense(self.width, name="hidden")(x.reshape(x.shape[0], -1)))
        return nn.Dense(self.num_classes, name="out")(h), (h,)


def build(index, model, num_classes, vocab_size):
    return TinyNet(model.width * model.levels[index], num_classes)  # levels (1, 2): widths 4, 8


def probe(module, params):
    """The input width, from the saved first kernel: what the parameter shapes depend on."""
    kernel = params.get("hidden", {}).get("kernel")
    if kernel is None:
        return "it has no parameters hidden/kernel"
    return jax.ShapeDtypeStruct((1, kernel.shape[0]), jnp.float32)


def check(config):
    if config.model.width % 2:
        raise ConfigError(f"config.model.width: test_tiny needs an even width, got {config.model.width}")


@pytest.fixture
def tiny_family():
    families.register(families.Family("test_tiny", TinyNet, build, "vectors", probe, check=check))
    yield
    families.unregister("test_tiny")


def tiny_config():
    c = default_config()
    c.model.family, c.model.levels, c.model.width = "test_tiny", (1, 2), 4
    c.train.epochs, c.train.batch_size, c.train.learning_rate = 2, 32, 3e-2
    c.baselines.time_matched = False  # its length depends on the clock; everything else is exact
    c.checkpoint.every_steps, c.checkpoint.keep = 3, 3  # 3 phases of 8 steps
    return c


def leaves(result) -> list[np.ndarray]:
    return [np.asarray(leaf) for leaf in
            jax.tree.leaves([[run.variables for run in result.sal], result.plain_epoch_matched.variables])]


def test_a_family_registered_from_outside_trains_checkpoints_resumes_and_loads(tmp_path, tiny_family, capfd):
    config, data = tiny_config(), blobs()
    directory = str(tmp_path / "run")
    result = train_ladder(make_ladder(config.model, data.num_classes), data, config, checkpoint_dir=directory)
    assert [run.level for run in result.sal] == [1, 2] and result.plain_epoch_matched is not None

    # Resumed from its newest checkpoint (the end), then, with the newest two lost, from the save at step 36,
    # in the last phase: both give the uninterrupted run, bit for bit.
    again = train_ladder(make_ladder(config.model, data.num_classes), data, config, checkpoint_dir=directory)
    saves = sorted(int(name) for name in os.listdir(directory) if name.isdigit())
    for save in saves[-2:]:
        shutil.rmtree(os.path.join(directory, str(save)))
    capfd.readouterr()
    resumed = train_ladder(make_ladder(config.model, data.num_classes), data, config, checkpoint_dir=directory)
    # the newest left is inside the last phase, the compute-matched baseline (a step count of its own)
    assert "at 'plain (compute-matched)', epoch 3, step 4 of the epoch (training step 36)" in capfd.readouterr().err
    for other in (again, resumed):
        assert all(np.array_equal(a, b) for a, b in zip(leaves(other), leaves(result), strict=True))
        assert [run.history for run in other.sal] == [run.history for run in result.sal]

    module, variables = load_level(directory, 2)  # rebuilt from the saved config through the registry
    assert module == TinyNet(8, data.num_classes)
    np.testing.assert_array_equal(predict(module, variables, data.x_test),
                                  predict(module, result.sal[-1].variables, data.x_test))
    assert param_count(variables) == num_params(module, data.x_train[:1]) == 8 * 8 + 8 + 8 * 3 + 3


def test_a_registered_family_is_checked_and_listed(tiny_family):
    config, data = tiny_config(), blobs()
    config.model.width = 3
    with pytest.raises(ConfigError, match="config.model.width: test_tiny needs an even width, got 3"):
        train_ladder(make_ladder(config.model, data.num_classes), data, config)
    with pytest.raises(ConfigError, match=r"unknown family 'nope'; choose from \[.*'vit', 'test_tiny'\]"):
        make_level("nope", 0, config.model, 3)
    with pytest.raises(ValueError, match="'test_tiny' is already registered"):
        families.register(families.Family("test_tiny", TinyNet, build, "vectors", probe))


def test_unregistering_leaves_the_built_ins():
    assert "test_tiny" not in families.names()
    assert families.names("images") == ["cnn", "vit"]
