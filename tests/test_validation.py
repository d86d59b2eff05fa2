"""Bad input fails fast with one line that names the field, before any training step."""
import numpy as np
import pytest

import sal_jax.ladder
from sal_jax.data import load_dataset
from sal_jax.data.arrays import ArrayDataset
from sal_jax.errors import ConfigError
from sal_jax.ladder import train_ladder
from sal_jax.models import MLP, make_ladder


@pytest.fixture(autouse=True)
def no_training(monkeypatch):
    """Any attempt to train fails the test: every error below must come before the first level."""
    def refuse(*args, **kwargs):
        raise AssertionError("training started before the bad input was reported")
    monkeypatch.setattr(sal_jax.ladder, "train_level", refuse)


def expect_error(data, config, pattern, levels=None):
    with pytest.raises(ConfigError, match=pattern) as info:
        train_ladder(levels or make_ladder(config.model, data.num_classes), data, config)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("field, value, pattern", [
    ("epochs", 0, r"config.train.epochs: must be a positive integer, got 0"),
    ("epochs", -3, r"config.train.epochs: must be a positive integer"),
    ("batch_size", 0, r"config.train.batch_size: must be a positive integer"),
    ("learning_rate", 0.0, r"config.train.learning_rate: must be a positive number, got 0.0"),
    ("learning_rate", -1e-3, r"config.train.learning_rate: must be a positive number"),
    ("rounds", 0, r"config.train.rounds: must be a positive integer"),
    ("optimizer", "lion", r"config.train.optimizer: unknown 'lion'"),
    ("steps_per_call", -1, r"config.train.steps_per_call: must be 0 \(chosen by the library\) or a positive "
                           r"integer, got -1$"),
])
def test_non_positive_or_unknown_training_settings(data, config, field, value, pattern):
    config.train[field] = value
    expect_error(data, config, pattern)


@pytest.mark.parametrize("value", [-1, -0.5, float("nan")])
def test_bad_on_device_data_limit(data, config, value):
    config.parallel.data_on_device_mb = value
    expect_error(data, config, r"config.parallel.data_on_device_mb: must be a number >= 0, got")


def test_batch_larger_than_the_dataset(data, config):
    config.train.batch_size = 151
    expect_error(data, config, r"config.train.batch_size: 151 is larger than the training set of 'blobs' \(150")


@pytest.mark.parametrize("field, value, pattern", [
    ("distance", "l1", r"config.guidance.distance: unknown 'l1'"),
    ("schedule", "cosine", r"config.guidance.schedule: unknown 'cosine'"),
    ("temperature", 0.0, r"config.guidance.temperature: must be a positive number"),
    ("hidden_weight", -1.0, r"config.guidance.hidden_weight: must be a number >= 0"),
    ("layer_map", "1:1,4:3", r"config.guidance.layer_map: teacher layer 4 does not exist"),
    ("layer_map", "1:9", r"config.guidance.layer_map: student layer 9 does not exist"),
])
def test_bad_guidance_settings(data, config, field, value, pattern):
    config.guidance[field] = value
    expect_error(data, config, pattern)


@pytest.mark.parametrize("levels", [(2, 2), (1, 3, 2)])
def test_a_ladder_that_does_not_grow(data, config, levels):
    config.model.levels = levels
    expect_error(data, config, r"config.model.levels: the ladder must grow in complexity, but level \d")


def test_a_user_ladder_that_does_not_grow(data, config):
    # params counted by hand: 8*16 + 16 + 16*3 + 3 = 195 and 8*32 + 32 + 32*3 + 3 = 387
    expect_error(data, config, r"level 2 \(MLP, 195 params\) is not larger than level 1 \(387 params\)",
                 levels=[MLP(1, 32, 3), MLP(1, 16, 3)])


def test_unknown_family_and_dataset(config):
    config.model.family = "transformer"
    with pytest.raises(ConfigError, match=r"config.model.family: unknown family 'transformer'"):
        make_ladder(config.model, 3)
    config.data.name = "imagenet"
    with pytest.raises(ConfigError, match=r"config.data.name: unknown dataset 'imagenet'"):
        load_dataset(config.data)


def test_labels_outside_the_class_range():
    x, y = np.zeros((4, 2), np.float32), np.array([0, 1, 3, 1])
    with pytest.raises(ConfigError, match=r"dataset 'toy': train label 3 at index 2 is outside \[0, 3\)"):
        ArrayDataset("toy", x, y, x, np.zeros(4, np.int32), num_classes=3)
    with pytest.raises(ConfigError, match=r"dataset 'toy': test label -1 at index 0"):
        ArrayDataset("toy", x, np.zeros(4, np.int32), x, np.array([-1, 0, 0, 0]), num_classes=3)
