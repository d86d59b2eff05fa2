"""MNIST and CIFAR-10 from a TFDS data directory, held in memory, plus jit-able augmentation.

The data is read with `tfds.data_source` (random access over ArrayRecord files), which needs no
TensorFlow; `tfds.load` cannot read ArrayRecord. Reading record by record costs tens of seconds per
pass, so each split is read once, in batches, and the decoded uint8 arrays are cached per process.
"""
from __future__ import annotations

import functools
import os

import jax
import jax.numpy as jnp
import numpy as np

from sal_jax.data.arrays import ArrayDataset
from sal_jax.errors import ConfigError, first_line

IMAGE_DATASETS = ("mnist", "cifar10")
MNIST_MEAN, MNIST_STD = 0.1307, 0.3081  # the customary MNIST train statistics of pixels in [0, 1]
_READ_BATCH = 4096  # records per `__getitems__` call: amortises the per-call overhead
_SPLITS = ("train", "test")

RawSplits = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]  # x_train, y_train, x_test, y_test


def resolve_tfds_dir(data_dir: str | os.PathLike | None) -> str:
    """`data_dir`, else $TFDS_DATA_DIR, else TFDS's default (~/tensorflow_datasets), as an absolute path.

    Resolved here, at call time, because TFDS reads the environment variable once at import.
    """
    if data_dir is None:
        import tensorflow_datasets as tfds
        data_dir = tfds.core.constants.get_default_data_dir()
    return os.path.abspath(os.path.expanduser(os.fspath(data_dir)))


def _read_split(source) -> tuple[np.ndarray, np.ndarray]:
    """One pass over a data source in batches; `source[a:b]` is not supported by TFDS 4.9, `__getitems__` is."""
    images, labels = [], []
    for start in range(0, len(source), _READ_BATCH):
        for example in source.__getitems__(range(start, min(start + _READ_BATCH, len(source)))):
            images.append(example["image"])
            labels.append(example["label"])
    return np.stack(images), np.asarray(labels, np.int32)


@functools.lru_cache(maxsize=None)
def _load_raw_cached(name: str, root: str) -> RawSplits:
    import tensorflow_datasets as tfds  # imported here: it is slow to import and only image data needs it
    hint = "set TFDS_DATA_DIR or config.data.data_dir to a folder that holds it"
    # Checked first, because TFDS reports a missing dataset as an unrelated file-format error, and without a
    # tfds.builder: for a dataset not on disk, it makes an empty tmp*tfds folder in the temp directory (to copy
    # the metadata from gs://tfds-data into; never removed) and warns of the folder it found nothing in.
    version_dir = os.path.join(root, name, str(tfds.builder_cls(name).VERSION))
    if not os.path.isfile(os.path.join(version_dir, "dataset_info.json")):  # what builder.is_prepared() checks
        raise ConfigError(f"no prepared TFDS dataset {name!r} under {root} (looked for {version_dir}); {hint}")
    try:
        # download=False: a loader must never start a download or build another dataset behind the user's back.
        sources = tfds.data_source(name, data_dir=root, download=False)
        (x_train, y_train), (x_test, y_test) = (_read_split(sources[split]) for split in _SPLITS)
    except (OSError, RuntimeError, ValueError, KeyError) as e:
        # TFDS opens the ArrayRecord files lazily, so a broken copy fails here, at the first read.
        cause = first_line(e)
        raise ConfigError(f"cannot read TFDS dataset {name!r} under {root}: {cause}; {hint}") from e
    for array in (x_train, y_train, x_test, y_test):
        array.flags.writeable = False  # shared by every caller in this process
    return x_train, y_train, x_test, y_test


def load_raw_images(name: str, data_dir: str | os.PathLike | None = None) -> RawSplits:
    """Decoded uint8 images (N, H, W, C) and int32 labels of both splits, cached per (name, directory)."""
    if name not in IMAGE_DATASETS:
        raise ConfigError(f"config.data.name: unknown image dataset {name!r}; choose from {list(IMAGE_DATASETS)}")
    return _load_raw_cached(name, resolve_tfds_dir(data_dir))


def channel_stats(images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Exact per-channel mean and std of uint8 images (N, H, W, C) scaled to [0, 1].

    From per-channel 256-bin histograms, so no float copy of the whole split is made.
    """
    flat = images.reshape(-1, images.shape[-1])
    levels = np.arange(256) / 255.0
    mean, std = [], []
    for c in range(flat.shape[1]):
        counts = np.bincount(flat[:, c], minlength=256)
        m = counts @ levels / counts.sum()
        mean.append(m)
        std.append(np.sqrt(counts @ (levels - m) ** 2 / counts.sum()))
    return np.array(mean, np.float32), np.array(std, np.float32)


def standardize(images: np.ndarray, mean: float | np.ndarray, std: float | np.ndarray) -> np.ndarray:
    """float32 (images / 255 - mean) / std, computed in place on one float copy (CIFAR-10 train is 600 MB)."""
    out = images.astype(np.float32)
    out *= np.float32(1 / 255)
    out -= np.asarray(mean, np.float32)
    out /= np.asarray(std, np.float32)
    return out


def load_image_dataset(name: str, data_dir: str | None = None) -> ArrayDataset:
    """MNIST (28x28x1) or CIFAR-10 (32x32x3) as standardised float32 NHWC arrays with int32 labels.

    MNIST uses the customary constants 0.1307 / 0.3081; CIFAR-10 uses the per-channel statistics of its
    own train split, because copies differ (this project's is a JPEG re-encoding, for which the usual
    published constants are slightly off).
    The test split is standardised with the train statistics.
    """
    x_train, y_train, x_test, y_test = load_raw_images(name, data_dir)
    mean, std = (MNIST_MEAN, MNIST_STD) if name == "mnist" else channel_stats(x_train)
    return ArrayDataset(name, standardize(x_train, mean, std), y_train, standardize(x_test, mean, std), y_test,
                        num_classes=10)


def augment_images(images: jax.Array, key: jax.Array, pad: int = 4) -> jax.Array:
    """Per-example random crop (reflect-pad by `pad`, crop back to size) and random horizontal flip.

    NHWC in, same shape out; a pure function of `key`, so it is deterministic and jit-able (`pad` is a
    Python int). Reflect padding, not zeros, so the result does not depend on how images were normalised.
    """
    n, h, w, c = images.shape
    crop_key, flip_key = jax.random.split(key)
    offsets = jax.random.randint(crop_key, (n, 2), 0, 2 * pad + 1)
    flips = jax.random.bernoulli(flip_key, 0.5, (n,))
    padded = jnp.pad(images, ((0, 0), (pad, pad), (pad, pad), (0, 0)), mode="reflect")

    def one(image, offset, flip):
        crop = jax.lax.dynamic_slice(image, (offset[0], offset[1], 0), (h, w, c))
        return jnp.where(flip, crop[:, ::-1], crop)

    return jax.vmap(one)(padded, offsets, flips)
