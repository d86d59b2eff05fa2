"""Arrays of your own from a .npz file, through the config."""
import numpy as np
import pytest

from sal_jax.config import default_config
from sal_jax.data import load_dataset
from sal_jax.errors import ConfigError


def npz_config(path):
    data = default_config().data
    data.name, data.path = "npz", str(path)
    return data


def test_a_npz_file_is_a_dataset_with_subsets(tmp_path):
    rng = np.random.default_rng(0)
    y_train = np.repeat(np.arange(3), 10)
    np.savez(tmp_path / "feats.npz", x_train=rng.normal(size=(30, 5)), y_train=y_train,
             x_test=rng.normal(size=(6, 5)), y_test=np.arange(6) % 3, num_classes=3)
    data = load_dataset(npz_config(tmp_path / "feats.npz"))
    assert (data.name, data.num_classes, data.x_train.dtype, data.y_train.dtype) == ("feats.npz", 3, np.float32, np.int32)
    np.testing.assert_array_equal(data.y_train, y_train)
    config = npz_config(tmp_path / "feats.npz")
    config.per_class = 2
    assert np.bincount(load_dataset(config).y_train).tolist() == [2, 2, 2]
    np.savez(tmp_path / "no_count.npz", x_train=np.ones((3, 2)), y_train=[0, 1, 2], x_test=np.ones((1, 2)), y_test=[4])
    assert load_dataset(npz_config(tmp_path / "no_count.npz")).num_classes == 5  # the largest label + 1


def test_bad_npz_files_are_named(tmp_path):
    with pytest.raises(ConfigError, match="config.data.path: dataset 'npz' needs the .npz file"):
        load_dataset(npz_config(""))
    with pytest.raises(ConfigError, match="config.data.path: no file at"):
        load_dataset(npz_config(tmp_path / "nope.npz"))
    np.savez(tmp_path / "half.npz", x_train=np.ones((3, 2)), y_train=[0, 1, 2])
    with pytest.raises(ConfigError, match=r"lacks x_test, y_test \(has \['x_train', 'y_train'\]\)"):
        load_dataset(npz_config(tmp_path / "half.npz"))
    np.savez(tmp_path / "float_labels.npz", x_train=np.ones((3, 2)), y_train=[0.0, 1.0, 2.0],
             x_test=np.ones((1, 2)), y_test=[1.0])
    with pytest.raises(ConfigError, match="y_train must be a 1-D integer array of class ids, got dtype float64"):
        load_dataset(npz_config(tmp_path / "float_labels.npz"))
