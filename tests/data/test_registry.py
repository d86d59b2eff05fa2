"""load_dataset: one entry point from config to data, with its checks."""
import numpy as np
import pytest

from sal_jax.config import default_config
from sal_jax.data import load_dataset
from sal_jax.errors import ConfigError


def data_config(name, **values):
    data = default_config().data
    data.name = name
    data.update(values)
    return data


def test_family_and_dataset_must_fit(tmp_path):
    # An empty data_dir: the family check comes before any file is read.
    with pytest.raises(ConfigError, match=r"config.model.family: 'mlp' cannot read dataset 'trec' \(text needs"):
        load_dataset(data_config("trec", data_dir=str(tmp_path)), "mlp")
    with pytest.raises(ConfigError, match=r"config.model.family: 'rnn' cannot read dataset 'digits'"):
        load_dataset(data_config("digits"), "rnn")


def test_text_needs_a_data_dir():
    with pytest.raises(ConfigError, match=r"config.data.data_dir: text dataset 'emotion' needs the folder"):
        load_dataset(data_config("emotion"), "rnn")


def test_a_missing_tfds_folder_names_the_path_and_the_fix(tmp_path):
    with pytest.raises(ConfigError, match=rf"{tmp_path}.*set TFDS_DATA_DIR or config.data.data_dir"):
        load_dataset(data_config("mnist", data_dir=str(tmp_path)), "mlp")


def test_per_class_subset_is_fixed_by_subset_seed_not_by_training_seed():
    a = load_dataset(data_config("digits", per_class=5, subset_seed=3))
    b = load_dataset(data_config("digits", per_class=5, subset_seed=3))
    c = load_dataset(data_config("digits", per_class=5, subset_seed=4))
    assert np.bincount(a.y_train).tolist() == [5] * 10
    np.testing.assert_array_equal(a.x_train, b.x_train)
    assert not np.array_equal(a.x_train, c.x_train)
    assert len(a.x_test) == 540  # the test split is never cut


def test_too_large_a_subset_names_the_field():
    with pytest.raises(ConfigError, match=r"config.data.per_class=500 but class \d"):
        load_dataset(data_config("digits", per_class=500))


def test_cnn_gets_images_with_spatial_axes(tiny_tfds_dir):
    assert load_dataset(data_config("digits"), "cnn").x_train.shape[1:] == (8, 8, 1)
    assert load_dataset(data_config("cifar10", data_dir=str(tiny_tfds_dir)), "cnn").x_train.shape == (10, 32, 32, 3)


def test_tiny_image_and_text_data_come_through_load_dataset(tiny_tfds_dir, tiny_text_dir):
    mnist = load_dataset(data_config("mnist", data_dir=str(tiny_tfds_dir), per_class=1, subset_seed=0), "mlp")
    assert np.bincount(mnist.y_train).tolist() == [1] * 10 and mnist.x_train.shape == (10, 28, 28, 1)
    assert len(mnist.y_test) == 10  # the test split is never cut
    trec = load_dataset(data_config("trec", data_dir=str(tiny_text_dir), max_len=5), "rnn")
    assert trec.vocab_size == 21 and trec.x_train.shape == (6, 5)  # the tiny TREC.train has 19 distinct tokens


def test_real_trec_comes_through_load_dataset(real_text_dir):
    assert load_dataset(data_config("trec", data_dir=str(real_text_dir)), "rnn").vocab_size > 1000
