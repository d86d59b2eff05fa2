"""The embedded default dataset: scikit-learn's 8x8 handwritten digits (1,797 images, 10 classes).

It ships inside scikit-learn, so the main job runs on a fresh machine with no download, and its small
size makes it a real data-scarce task.
"""
from __future__ import annotations

import numpy as np

from sal_jax.data.arrays import ArrayDataset


def load_digits_dataset(test_fraction: float = 0.3, split_seed: int = 0, flatten: bool = True) -> ArrayDataset:
    """Digits scaled to [0, 1], split into train/test with a stratified, seeded split."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    x = (digits.images / 16.0).astype(np.float32)  # pixel values are 0..16
    x = x.reshape(len(x), -1) if flatten else x[..., None]
    y = digits.target.astype(np.int32)
    x_train, x_test, y_train, y_test = train_test_split(
        x, y, test_size=test_fraction, random_state=split_seed, stratify=y)
    return ArrayDataset("digits", x_train, y_train, x_test, y_test, num_classes=10)
