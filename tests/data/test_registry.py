"""load_dataset: one entry point from config to data, with its checks."""
from pathlib import Path

import numpy as np
import pytest

from sal_jax.config import default_config
from sal_jax.data import load_dataset
from sal_jax.errors import ConfigError

SHARED = Path(__file__).resolve().parents[3] / "shared"


def data_config(name, **values):
    data = default_config().data
    data.name = name
    data.update(values)
    return data


def test_family_and_dataset_must_fit():
    with pytest.raises(ConfigError, match=r"config.model.family: 'mlp' cannot read dataset 'trec' \(text needs"):
        load_dataset(data_config("trec", data_dir=str(SHARED / "datasets")), "mlp")
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


def test_cnn_gets_images_with_spatial_axes():
    assert load_dataset(data_config("digits"), "cnn").x_train.shape[1:] == (8, 8, 1)
    assert load_dataset(data_config("trec", data_dir=str(SHARED / "datasets")), "rnn").vocab_size > 1000
