"""MNIST / CIFAR-10 loading and the augmentation.

The `tiny_tfds_dir` tests check the loader on small TFDS copies written by the tests (tests/conftest.py
describes their pixels); the `real_tfds_dir` tests check the real datasets against the numbers of the
README of the prepared data (shared/datasets/README.md). Each real dataset is read once per session.
"""
from __future__ import annotations

import shutil
import socket
import tempfile
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sal_jax.data.images import IMAGE_DATASETS, augment_images, channel_stats, load_image_dataset, load_raw_images
from sal_jax.errors import ConfigError
from tiny_datasets import write_tiny_tfds

MNIST_TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
MNIST_TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


# --- the loader, on the tiny copies -------------------------------------------------------------------------

def test_tiny_mnist_raw_images_keep_their_labels(tiny_tfds_dir):
    x_train, y_train, x_test, y_test = load_raw_images("mnist", tiny_tfds_dir)
    assert x_train.shape == (20, 28, 28, 1) and x_test.shape == (10, 28, 28, 1)
    assert x_train.dtype == np.uint8 and y_train.dtype == np.int32
    # TFDS stores records in a hashed order, so pair each image with its label by its fill value.
    assert sorted(x_train[:, 0, 0, 0].tolist()) == [13 * i for i in range(20)]
    np.testing.assert_array_equal(y_train, x_train[:, 0, 0, 0] // 13 % 10)
    np.testing.assert_array_equal(x_test[:, 0, 0, 0], 255 - 25 * y_test)
    assert np.all(x_train == x_train[:, :1, :1, :])  # every image is one flat value: nothing mixed in


def test_tiny_mnist_is_standardised_with_the_customary_constants(tiny_tfds_dir):
    mnist = load_image_dataset("mnist", str(tiny_tfds_dir))
    assert mnist.x_train.dtype == np.float32 and mnist.num_classes == 10
    by_label = {int(y): float(x[0, 0, 0]) for x, y in zip(mnist.x_test, mnist.y_test)}
    # (p / 255 - 0.1307) / 0.3081 for the test fills p = 255, 130 and 30 (labels 0, 5 and 9).
    assert by_label[0] == pytest.approx(2.8214865, abs=1e-5)
    assert by_label[5] == pytest.approx(1.2304573, abs=1e-5)
    assert by_label[9] == pytest.approx(-0.0423659, abs=1e-5)
    assert mnist.x_train.min() == pytest.approx(-0.4242129, abs=1e-5)  # the train image filled with 0


def test_tiny_cifar10_uses_train_channel_stats_for_both_splits(tiny_tfds_dir):
    x_raw = load_raw_images("cifar10", tiny_tfds_dir)[0]
    mean, std = channel_stats(x_raw)
    # R: half 0, half 1; G: half 0.2, half 0.6; B: half the columns 0, half 0.8 (pixels / 255).
    np.testing.assert_allclose(mean, [0.5, 0.4, 0.4], atol=1e-6)
    np.testing.assert_allclose(std, [0.5, 0.2, 0.4], atol=1e-6)
    cifar10 = load_image_dataset("cifar10", str(tiny_tfds_dir))
    assert cifar10.x_train.shape == (10, 32, 32, 3) and cifar10.x_test.shape == (10, 32, 32, 3)
    assert sorted(cifar10.y_train.tolist()) == list(range(10))
    # So every standardised train value is -1 or +1, and which one follows the label (R, G) or column (B).
    y, column = cifar10.y_train[:, None, None], np.arange(32)
    for channel, plus_one in enumerate((y >= 5, y % 2 == 1, column >= 16)):
        expected = np.broadcast_to(np.where(plus_one, 1.0, -1.0), (10, 32, 32))
        np.testing.assert_allclose(cifar10.x_train[..., channel], expected, atol=1e-5)
    # Test pixels (204, 204, 102) with the train statistics: (0.8-0.5)/0.5, (0.8-0.4)/0.2, (0.4-0.4)/0.4.
    np.testing.assert_allclose(cifar10.x_test.reshape(-1, 3), np.tile([0.6, 2.0, 0.0], (10 * 32 * 32, 1)),
                               atol=1e-5)


def test_loading_is_cached_per_process(tiny_tfds_dir):
    assert load_raw_images("mnist", tiny_tfds_dir)[0] is load_raw_images("mnist", str(tiny_tfds_dir) + "/")[0]
    assert not load_raw_images("mnist", tiny_tfds_dir)[0].flags.writeable  # shared, so read-only


def test_tfds_data_dir_env_var_is_the_fallback(monkeypatch, tiny_tfds_dir):
    monkeypatch.setenv("TFDS_DATA_DIR", str(tiny_tfds_dir))
    assert load_raw_images("mnist")[0] is load_raw_images("mnist", tiny_tfds_dir)[0]
    missing = tiny_tfds_dir.parent / "no_such_tfds_dir"
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


def test_broken_dataset_copy_is_a_config_error(tmp_path, tiny_tfds_dir):
    # Metadata present but no records: TFDS only fails at the first read.
    version_dir = tmp_path / "mnist" / "3.0.1"
    version_dir.mkdir(parents=True)
    for meta in (tiny_tfds_dir / "mnist" / "3.0.1").glob("*.json"):
        shutil.copy(meta, version_dir)
    with pytest.raises(ConfigError) as info:
        load_image_dataset("mnist", str(tmp_path))
    assert str(tmp_path) in str(info.value) and "\n" not in str(info.value)


def test_unknown_name_never_falls_back_to_another_dataset(tiny_tfds_dir):
    with pytest.raises(ConfigError, match="fashion_mnist"):
        load_image_dataset("fashion_mnist", str(tiny_tfds_dir))


def no_network(*args, **kwargs):
    raise AssertionError(f"network access: {args}")


@pytest.fixture
def offline_temp_dir(tmp_path, monkeypatch) -> Path:
    """A fresh, empty tempfile.gettempdir() for one test, which any connection or host name lookup fails."""
    temp = tmp_path / "temp"
    temp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(temp))
    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setattr(socket, "getaddrinfo", no_network)
    return temp


def test_tfds_copies_are_written_and_read_offline_leaving_no_temp_folder(tmp_path, offline_temp_dir):
    """TFDS writes the tiny copies and the loader reads them without the network, and leave nothing in the
    temp directory (TFDS's builder of a dataset not yet on disk made an empty tmp*tfds folder, never
    removed, to copy the dataset's metadata from gs://tfds-data into)."""
    root = write_tiny_tfds(tmp_path / "tfds")
    for name in IMAGE_DATASETS:
        assert load_raw_images(name, root)[0].shape[0] > 0
    assert list(offline_temp_dir.iterdir()) == []


def test_a_missing_dataset_is_reported_offline_leaving_no_temp_folder(tmp_path, offline_temp_dir):
    """No data directory, or one with an empty dataset folder: a ConfigError, found on disk alone."""
    (tmp_path / "empty" / "cifar10").mkdir(parents=True)
    for root in (tmp_path / "nowhere", tmp_path / "empty"):
        with pytest.raises(ConfigError, match="no prepared TFDS dataset"):
            load_image_dataset("cifar10", str(root))
    assert list(offline_temp_dir.iterdir()) == []


# --- the real datasets ----------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def mnist(real_tfds_dir):
    return load_image_dataset("mnist", str(real_tfds_dir))


@pytest.fixture(scope="module")
def cifar10(real_tfds_dir):
    return load_image_dataset("cifar10", str(real_tfds_dir))


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


def test_mnist_raw_pixels_have_the_readme_statistics(real_tfds_dir):
    x_train, _, x_test, _ = load_raw_images("mnist", real_tfds_dir)
    assert x_train.dtype == np.uint8
    assert channel_stats(x_train)[0][0] == pytest.approx(0.1306604763, abs=1e-6)
    assert channel_stats(x_train)[1][0] == pytest.approx(0.3081078039, abs=1e-6)
    assert channel_stats(x_test)[0][0] == pytest.approx(0.1325146058, abs=1e-6)


def test_cifar10_shapes_labels_and_counts(cifar10):
    assert cifar10.x_train.shape == (50000, 32, 32, 3) and cifar10.x_test.shape == (10000, 32, 32, 3)
    assert cifar10.x_train.dtype == np.float32 and cifar10.y_test.dtype == np.int32
    assert np.bincount(cifar10.y_train).tolist() == [5000] * 10
    assert np.bincount(cifar10.y_test).tolist() == [1000] * 10


def test_cifar10_uses_train_channel_stats_for_both_splits(cifar10, real_tfds_dir):
    raw_train, _, raw_test, _ = load_raw_images("cifar10", real_tfds_dir)
    mean, std = channel_stats(raw_train)
    # This project's JPEG copy keeps the usual means and has slightly lower stds than the original pixels,
    # which a copy prepared by TFDS itself has (README, "Datasets"); either is CIFAR-10.
    np.testing.assert_allclose(mean, [0.4914, 0.4822, 0.4465], atol=1e-3)
    jpeg_std, original_std = [0.2452, 0.2428, 0.2606], [0.2470, 0.2435, 0.2616]
    assert np.allclose(std, jpeg_std, atol=1e-3) or np.allclose(std, original_std, atol=1e-3), std
    for c in range(3):
        channel = cifar10.x_train[..., c]
        assert abs(channel.mean(dtype=np.float64)) < 1e-4 and abs(channel.std(dtype=np.float64) - 1) < 1e-4
    np.testing.assert_allclose(cifar10.x_test[:100], (raw_test[:100] / 255 - mean) / std, atol=1e-5)


# --- augmentation ---------------------------------------------------------------------------------------------

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
