"""MNIST / CIFAR-10 loading from the shared TFDS folder, and the augmentation.

Expected numbers are those of ../shared/datasets/README.md. Each dataset is read once per session.
"""
from __future__ import annotations

import shutil
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sal_jax.data.images import augment_images, channel_stats, load_image_dataset, load_raw_images
from sal_jax.errors import ConfigError

TFDS_DIR = Path(__file__).resolve().parents[3] / "shared" / "tensorflow_datasets"  # <repo>/../shared

MNIST_TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
MNIST_TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


@pytest.fixture(scope="module")
def mnist():
    return load_image_dataset("mnist", str(TFDS_DIR))


@pytest.fixture(scope="module")
def cifar10():
    return load_image_dataset("cifar10", str(TFDS_DIR))


def test_mnist_shapes_labels_and_counts(mnist):
    assert mnist.x_train.shape == (60000, 28, 28, 1) and mnist.x_test.shape == (10000, 28, 28, 1)
    assert mnist.x_train.dtype == np.float32 and mnist.y_train.dtype == np.int32
    assert mnist.num_classes == 10
    assert np.bincount(mnist.y_train).tolist() == MNIST_TRAIN_COUNTS
    assert np.bincount(mnist.y_test).tolist() == MNIST_TEST_COUNTS


def test_mnist_is_standardised_with_the_customary_constants(mnist):
    x = mnist.x_train
    assert abs(x.mean(dtype=np.float64)) < 1e-3 and abs(x.std(dtype=np.float64) - 1) < 1e-3
    # Pixel 0 and 255 land exactly where (p / 255 - 0.1307) / 0.3081 puts them.
    assert x.min() == pytest.approx(-0.1307 / 0.3081, abs=1e-5)
    assert x.max() == pytest.approx((1 - 0.1307) / 0.3081, abs=1e-5)


def test_mnist_raw_pixels_have_the_readme_statistics():
    x_train, _, x_test, _ = load_raw_images("mnist", TFDS_DIR)
    assert x_train.dtype == np.uint8
    assert channel_stats(x_train)[0][0] == pytest.approx(0.1306604763, abs=1e-6)
    assert channel_stats(x_train)[1][0] == pytest.approx(0.3081078039, abs=1e-6)
    assert channel_stats(x_test)[0][0] == pytest.approx(0.1325146058, abs=1e-6)


def test_cifar10_shapes_labels_and_counts(cifar10):
    assert cifar10.x_train.shape == (50000, 32, 32, 3) and cifar10.x_test.shape == (10000, 32, 32, 3)
    assert cifar10.x_train.dtype == np.float32 and cifar10.y_test.dtype == np.int32
    assert np.bincount(cifar10.y_train).tolist() == [5000] * 10
    assert np.bincount(cifar10.y_test).tolist() == [1000] * 10


def test_cifar10_uses_train_channel_stats_for_both_splits(cifar10):
    raw_train, _, raw_test, _ = load_raw_images("cifar10", TFDS_DIR)
    mean, std = channel_stats(raw_train)
    # README: the JPEG copy keeps the usual means and has slightly lower stds.
    np.testing.assert_allclose(mean, [0.4914, 0.4822, 0.4465], atol=1e-3)
    np.testing.assert_allclose(std, [0.2452, 0.2428, 0.2606], atol=1e-3)
    for c in range(3):
        channel = cifar10.x_train[..., c]
        assert abs(channel.mean(dtype=np.float64)) < 1e-4 and abs(channel.std(dtype=np.float64) - 1) < 1e-4
    np.testing.assert_allclose(cifar10.x_test[:100], (raw_test[:100] / 255 - mean) / std, atol=1e-5)


def test_loading_is_cached_per_process(mnist):
    assert load_raw_images("mnist", TFDS_DIR)[0] is load_raw_images("mnist", str(TFDS_DIR) + "/")[0]


def test_tfds_data_dir_env_var_is_the_fallback(monkeypatch, mnist):
    monkeypatch.setenv("TFDS_DATA_DIR", str(TFDS_DIR))
    assert load_raw_images("mnist")[0] is load_raw_images("mnist", TFDS_DIR)[0]
    missing = TFDS_DIR.parent / "no_such_tfds_dir"
    monkeypatch.setenv("TFDS_DATA_DIR", str(missing))
    with pytest.raises(ConfigError, match="no_such_tfds_dir"):
        load_image_dataset("mnist")


@pytest.mark.parametrize("make_empty_dataset_folder", [False, True])
def test_missing_dir_is_a_one_line_config_error_naming_the_path(tmp_path, make_empty_dataset_folder):
    missing = tmp_path / "nowhere"
    if make_empty_dataset_folder:
        (missing / "cifar10").mkdir(parents=True)
    with pytest.raises(ConfigError) as info:
        load_image_dataset("cifar10", str(missing))
    message = str(info.value)
    assert str(missing / "cifar10") in message and "TFDS_DATA_DIR" in message and "\n" not in message


def test_broken_dataset_copy_is_a_config_error(tmp_path):
    # Metadata present but no records: TFDS only fails at the first read.
    version_dir = tmp_path / "mnist" / "3.0.1"
    version_dir.mkdir(parents=True)
    for meta in (TFDS_DIR / "mnist" / "3.0.1").glob("*.json"):
        shutil.copy(meta, version_dir)
    with pytest.raises(ConfigError) as info:
        load_image_dataset("mnist", str(tmp_path))
    assert str(tmp_path) in str(info.value) and "\n" not in str(info.value)


def test_unknown_name_never_falls_back_to_another_dataset():
    with pytest.raises(ConfigError, match="fashion_mnist"):
        load_image_dataset("fashion_mnist", str(TFDS_DIR))


def _images(n=8, h=6, w=5, c=2):
    return jax.random.normal(jax.random.key(0), (n, h, w, c))


def test_augment_is_deterministic_per_key_and_shape_preserving():
    x = _images()
    a = augment_images(x, jax.random.key(1))
    assert a.shape == x.shape and a.dtype == x.dtype
    np.testing.assert_array_equal(a, augment_images(x, jax.random.key(1)))
    np.testing.assert_array_equal(a, jax.jit(augment_images)(x, jax.random.key(1)))
    assert not np.array_equal(a, augment_images(x, jax.random.key(2)))


def test_augment_flip_only_mirrors_some_images_and_keeps_the_rest():
    ramp = jnp.broadcast_to(jnp.arange(5.0)[None, :, None], (4, 5, 1))  # columns 0..4: asymmetric
    x = jnp.broadcast_to(ramp, (64, 4, 5, 1))
    out = np.asarray(augment_images(x, jax.random.key(3), pad=0))
    flipped = np.array([np.array_equal(o, ramp[:, ::-1]) for o in out])
    kept = np.array([np.array_equal(o, ramp) for o in out])
    assert np.all(flipped | kept) and 10 < flipped.sum() < 54


def test_augment_output_is_a_window_of_the_padded_image():
    x = _images(n=16)
    pad = 2
    out = np.asarray(augment_images(x, jax.random.key(4), pad=pad))
    padded = np.pad(np.asarray(x), ((0, 0), (pad, pad), (pad, pad), (0, 0)), mode="reflect")
    offsets = set()
    for image, o in zip(padded, out):
        windows = [(i, j) for i in range(2 * pad + 1) for j in range(2 * pad + 1)
                   if any(np.allclose(image[i:i + 6, j:j + 5], v) for v in (o, o[:, ::-1]))]
        assert windows, "augmented image is not a crop of the padded image"
        offsets.add(windows[0])
    assert len(offsets) > 1  # offsets really vary across the batch
