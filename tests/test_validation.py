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
    ("weight_decay", -0.1, r"config.train.weight_decay: must be None \(optax's default\) or a number >= 0, got -0.1"),
    ("weight_decay", 0.1, r"config.train.weight_decay: only adamw decays weights; config.train.optimizer is 'adam'"),
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
    ("layer_reduction", "max", r"config.guidance.layer_reduction: unknown 'max'; choose from \['sum', 'mean'\]$"),
    ("feature_norm", "batch", r"config.guidance.feature_norm: unknown 'batch'; "
                              r"choose from \['none', 'unit_rms', 'layer_rms'\]$"),
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
    config.model.family = "resnet"
    with pytest.raises(ConfigError, match=r"config.model.family: unknown family 'resnet'"):
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


def one_line_error(pattern, make):
    """`make()` raises ConfigError matching `pattern`, with a one-line message; returns that message."""
    with pytest.raises(ConfigError, match=pattern) as info:
        make()
    assert "\n" not in str(info.value)
    return str(info.value)


def toy(x_train, y_train, x_test=None, y_test=None, classes=3):
    x_test = x_train if x_test is None else x_test
    y_test = np.zeros(len(x_test), np.int32) if y_test is None else y_test
    return ArrayDataset("toy", x_train, y_train, x_test, y_test, num_classes=classes)


def test_a_test_split_with_another_feature_count():
    x, y = np.zeros((4, 8), np.float32), np.zeros(4, np.int32)
    one_line_error(r"dataset 'toy': x_test examples have shape \(5,\) but x_train examples have \(8,\); both "
                   r"splits need the same$", lambda: toy(x, y, np.zeros((4, 5), np.float32)))
    one_line_error(r"x_test examples have shape \(8, 8, 3\) but x_train examples have \(8, 8, 1\)",
                   lambda: toy(np.zeros((4, 8, 8, 1)), y, np.zeros((4, 8, 8, 3))))


@pytest.mark.parametrize("dtype", [np.float32, np.float64, bool])
def test_labels_must_be_integers_even_when_integral_floats(dtype):
    x = np.zeros((4, 2), np.float32)
    labels = np.array([0, 1, 2, 1]).astype(dtype)  # integral values: a cast would "work", silently
    one_line_error(rf"dataset 'toy': y_train must be a 1-D integer array of class ids, got dtype "
                   rf"{np.dtype(dtype)}, shape \(4,\)$", lambda: toy(x, labels))
    one_line_error(rf"y_test must be a 1-D integer array of class ids, got dtype {np.dtype(dtype)}",
                   lambda: toy(x, np.zeros(4, np.int32), x, labels))


def test_one_hot_labels_are_refused():
    one_line_error(r"y_train must be a 1-D integer array of class ids, got dtype int64, shape \(4, 3\)",
                   lambda: toy(np.zeros((4, 2), np.float32), np.eye(3, dtype=np.int64)[[0, 1, 2, 1]]))


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_inputs_name_the_split_and_the_first_bad_example(bad):
    x = np.zeros((10_000, 2, 2), np.float32)  # > one block of the check (4096 examples)
    x[5000, 1, 0], x[9000, 0, 0] = bad, bad
    y = np.zeros(len(x), np.int32)
    one_line_error(r"dataset 'toy': x_train has a non-finite value \(NaN or inf\) in example 5000; every input "
                   r"must be finite$", lambda: toy(x, y, np.zeros((3, 2, 2), np.float32), y[:3]))
    one_line_error(r"dataset 'toy': x_test has a non-finite value \(NaN or inf\) in example 5000",
                   lambda: toy(np.zeros((3, 2, 2), np.float32), y[:3], x, y))


def test_finite_and_integer_inputs_pass():
    tokens = np.arange(12, dtype=np.int32).reshape(4, 3)
    assert toy(tokens, np.array([0, 1, 2, 0], np.uint8)).x_train is tokens


def test_a_cnn_given_flat_inputs(data, config):
    config.model.family = "cnn"
    expect_error(data, config, r"dataset 'blobs': x_train has shape \(150, 8\) \(float32\), but level 1 \(CNN\) "
                               r"needs images of shape \(N, H, W, C\)$")


def test_an_mlp_given_one_dimensional_inputs(data, config):
    flat = ArrayDataset("flat", data.x_train[:, 0], data.y_train, data.x_test[:, 0], data.y_test, 3)
    expect_error(flat, config, r"dataset 'flat': x_train has shape \(150,\) \(float32\), but level 1 \(MLP\) "
                               r"needs inputs of shape \(N, D\) \(or \(N, \.\.\.\), flattened per example\)$")


def test_an_rnn_given_float_inputs(data, config):
    from sal_jax.models import RNN
    expect_error(data, config, r"level 1 \(RNN\) needs integer token ids of shape \(N, L\)$",
                 levels=[RNN(1, 8, 30, 3), RNN(2, 8, 30, 3)])


def test_a_workdir_that_is_a_file_or_under_one(tmp_path):
    from sal_jax.validation import check_workdir
    afile = tmp_path / "results.json"
    afile.write_text("{}")
    one_line_error(rf"workdir: '{afile}' exists and is not a directory$", lambda: check_workdir(str(afile)))
    one_line_error(rf"workdir: cannot create '{afile}/run': Not a directory$",
                   lambda: check_workdir(str(afile / "run")))
    check_workdir(str(tmp_path / "new" / "run"))  # a good one is created
    assert (tmp_path / "new" / "run").is_dir()


def test_members_refuse_fsdp_and_a_data_axis_that_does_not_fit():
    from sal_jax.config import default_config
    from sal_jax.validation import validate_members

    config = default_config()
    config.train.ensemble, config.parallel.fsdp = 4, 2
    with pytest.raises(ConfigError, match=r"config.parallel.fsdp: members split over their own mesh axis"):
        validate_members(config)
    config.parallel.fsdp, config.parallel.data = 1, 3  # 1 device here: 3 does not divide it
    with pytest.raises(ConfigError, match=r"config.parallel.data: 3 does not divide the 1 devices"):
        validate_members(config)
