"""scikit-learn's small tabular sets (breast_cancer: 569 x 30, 2 classes; wine: 178 x 13, 3 classes),
shipped inside scikit-learn: a stratified, seeded train/test split, standardised with the training
split's mean and standard deviation."""
from __future__ import annotations

import numpy as np

from sal_jax.data.arrays import ArrayDataset

TABULAR = ("breast_cancer", "wine")


def load_tabular_dataset(name: str, test_fraction: float = 0.3, split_seed: int = 0) -> ArrayDataset:
    from sklearn import datasets
    from sklearn.model_selection import train_test_split

    x, y = getattr(datasets, f"load_{name}")(return_X_y=True)
    x_train, x_test, y_train, y_test = train_test_split(x, y.astype(np.int32), test_size=test_fraction,
                                                        random_state=split_seed, stratify=y)
    mean, std = x_train.mean(axis=0), x_train.std(axis=0)
    std = np.where(std > 0, std, 1.0)  # a constant feature stays 0
    scale = lambda a: ((a - mean) / std).astype(np.float32)
    return ArrayDataset(name, scale(x_train), y_train, scale(x_test), y_test, num_classes=int(y.max()) + 1)
