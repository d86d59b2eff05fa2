"""Shared fixtures: a tiny synthetic task and configs small enough for fast, exact tests."""
from __future__ import annotations

import ml_collections
import numpy as np
import pytest

from sal_jax.config import default_config
from sal_jax.data.arrays import ArrayDataset


def blobs(n_train: int = 150, n_test: int = 60, dim: int = 8, classes: int = 3, seed: int = 0) -> ArrayDataset:
    """Gaussian class blobs: learnable in a few steps, so tests can check that training does something."""
    rng = np.random.default_rng(seed)
    centers = rng.normal(0, 2, (classes, dim))

    def split(n):
        y = rng.integers(0, classes, n).astype(np.int32)
        return (centers[y] + rng.normal(0, 1, (n, dim))).astype(np.float32), y

    (x_tr, y_tr), (x_te, y_te) = split(n_train), split(n_test)
    return ArrayDataset("blobs", x_tr, y_tr, x_te, y_te, num_classes=classes)


@pytest.fixture
def data() -> ArrayDataset:
    return blobs()


@pytest.fixture
def config() -> ml_collections.ConfigDict:
    """A 3-level MLP ladder, 3 epochs per level, batch 32 (150 examples: a ragged last batch)."""
    c = default_config()
    c.model.levels = (1, 2, 3)
    c.model.width = 16
    c.train.epochs = 3
    c.train.batch_size = 32
    c.train.learning_rate = 3e-2
    return c
