"""Class-balanced training subsets."""
from __future__ import annotations

import numpy as np
import pytest

from sal_jax.data.arrays import ArrayDataset
from sal_jax.data.subsets import per_class_subset
from sal_jax.data.text import load_text_dataset
from sal_jax.errors import ConfigError


@pytest.fixture
def indexed() -> ArrayDataset:
    """Unbalanced 3-class data whose input row i is [i], so a subset row reveals where it came from."""
    y = np.random.default_rng(0).choice(3, size=300, p=[0.6, 0.3, 0.1]).astype(np.int32)
    x = np.arange(300, dtype=np.float32)[:, None]
    return ArrayDataset("indexed", x, y, x[:20] * -1, y[:20], num_classes=3)


def test_subset_is_balanced_and_taken_from_the_train_split(indexed):
    sub = per_class_subset(indexed, per_class=7, seed=0)
    assert np.bincount(sub.y_train, minlength=3).tolist() == [7, 7, 7]
    rows = sub.x_train[:, 0].astype(int)
    assert len(set(rows)) == 21  # no repeats
    np.testing.assert_array_equal(indexed.y_train[rows], sub.y_train)  # each row keeps its own label
    assert sub.x_test is indexed.x_test and sub.y_test is indexed.y_test
    assert sub.num_classes == indexed.num_classes and sub.name == indexed.name


def test_subset_is_deterministic_per_seed_and_differs_across_seeds(indexed):
    a, b = per_class_subset(indexed, 7, seed=1), per_class_subset(indexed, 7, seed=1)
    np.testing.assert_array_equal(a.x_train, b.x_train)
    assert not np.array_equal(a.x_train, per_class_subset(indexed, 7, seed=2).x_train)


def test_too_large_or_non_positive_per_class_is_an_error(indexed):
    smallest = int(np.bincount(indexed.y_train).min())
    assert len(per_class_subset(indexed, smallest, seed=0).y_train) == 3 * smallest
    for bad in (smallest + 1, 0, -3):
        with pytest.raises(ConfigError, match="per_class"):
            per_class_subset(indexed, bad, seed=0)


def test_subset_of_tiny_emotion_data(tiny_text_dir):
    data, _ = load_text_dataset("emotion", str(tiny_text_dir))  # per class 3 4 2 2 2 2 (tests/conftest.py)
    sub = per_class_subset(data, per_class=2, seed=0)
    assert np.bincount(sub.y_train).tolist() == [2] * 6 and sub.x_train.shape == (12, 32)
    assert {tuple(row) for row in sub.x_train} <= {tuple(row) for row in data.x_train}
    with pytest.raises(ConfigError, match="per_class=3 but class 2 of dataset 'emotion' has only 2"):
        per_class_subset(data, per_class=3, seed=0)


def test_subset_of_real_emotion_data(real_text_dir):
    data, _ = load_text_dataset("emotion", str(real_text_dir))
    sub = per_class_subset(data, per_class=572, seed=0)  # 572 = size of the rarest class, surprise
    assert np.bincount(sub.y_train).tolist() == [572] * 6 and sub.x_train.shape == (3432, 32)
    with pytest.raises(ConfigError, match="per_class=573 but class 5"):
        per_class_subset(data, per_class=573, seed=0)
