"""Arrays of your own, from a .npz file: e.g. features a frozen backbone computed (experiments/frozen_features.py)."""
from __future__ import annotations

import os

import numpy as np

from sal_jax.data.arrays import ArrayDataset
from sal_jax.errors import ConfigError

NPZ_KEYS = ("x_train", "y_train", "x_test", "y_test")


def load_npz_dataset(path: str) -> ArrayDataset:
    """The dataset in `path`: arrays x_train, y_train, x_test, y_test and optionally num_classes (else the
    largest label + 1). Inputs as float32, labels as int32 (integer labels only)."""
    if not path:
        raise ConfigError("config.data.path: dataset 'npz' needs the .npz file to read")
    if not os.path.isfile(path):
        raise ConfigError(f"config.data.path: no file at {path!r}")
    with np.load(path) as arrays:
        missing = [key for key in NPZ_KEYS if key not in arrays]
        if missing:
            raise ConfigError(f"config.data.path: {path!r} lacks {', '.join(missing)} (has {sorted(arrays.files)}); "
                              f"it needs {', '.join(NPZ_KEYS)}")
        x_train, y_train, x_test, y_test = (arrays[key] for key in NPZ_KEYS)
        num_classes = int(arrays["num_classes"]) if "num_classes" in arrays else int(max(y_train.max(), y_test.max())) + 1
    labels = [y if not np.issubdtype(y.dtype, np.integer) else y.astype(np.int32) for y in (y_train, y_test)]
    return ArrayDataset(os.path.basename(path), x_train.astype(np.float32), labels[0], x_test.astype(np.float32),
                        labels[1], num_classes)
