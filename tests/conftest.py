"""Shared fixtures: a tiny synthetic task, configs small enough for fast, exact tests, and the datasets.

Real-data tests take `real_tfds_dir` / `real_text_dir`. Their root is $SAL_JAX_TEST_DATA (a folder holding
`tensorflow_datasets/` and `datasets/`, see the README's "Datasets"), else `<repo>/../shared` if it exists.
Without it they skip, so a fresh clone passes; with SAL_JAX_REQUIRE_TEST_DATA=1 (CI) they fail instead.

Loader tests take `tiny_tfds_dir` / `tiny_text_dir`: tiny copies of every dataset in the real on-disk
formats, written by tests/tiny_datasets.py (whose docstring lists their contents), so a clone without the
real data still tests the loaders end to end.

(One conftest.py for all of them: a second one, in tests/data, would shadow this module for the
`from conftest import blobs` of test_checkpoint.py and test_parallel.py.)
"""
from __future__ import annotations

import os
from pathlib import Path

from compilation_cache import use_compilation_cache

use_compilation_cache()  # before JAX is imported: see tests/compilation_cache.py

import ml_collections  # noqa: E402
import numpy as np
import pytest

from sal_jax.config import default_config
from sal_jax.data.arrays import ArrayDataset
from sal_jax.determinism import enable_determinism
from tiny_datasets import write_tiny_text, write_tiny_tfds

# The suite runs in deterministic mode (before anything starts JAX's backend, for the child processes
# that import this module too): on a GPU the tests then promise what a deterministic run gives, bit for
# bit where tests/promises.py says so. On a CPU it changes nothing. SAL_JAX_TEST_DETERMINISTIC=0 runs
# the suite in the backend's default mode (see DEVELOPERS.md).
if os.environ.get("SAL_JAX_TEST_DETERMINISTIC", "1") != "0":
    enable_determinism()


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


# --- the real datasets --------------------------------------------------------------------------------------

def _real_data(subfolder: str) -> Path:
    """<root>/<subfolder>, or a skip (a failure when SAL_JAX_REQUIRE_TEST_DATA is set) that says what to set."""
    root = os.environ.get("SAL_JAX_TEST_DATA") or Path(__file__).resolve().parents[2] / "shared"  # <repo>/../shared
    path = Path(root) / subfolder
    if path.is_dir():
        return path
    reason = (f"real data not found at {path}: set SAL_JAX_TEST_DATA to a folder holding tensorflow_datasets/ "
              f'and datasets/ (README, "Datasets")')
    required = os.environ.get("SAL_JAX_REQUIRE_TEST_DATA", "0")
    if required not in ("", "0"):  # any value but 0: "true" must not quietly mean "may skip"
        pytest.fail(f"{reason}; SAL_JAX_REQUIRE_TEST_DATA={required} forbids skipping", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def real_tfds_dir() -> Path:
    """The TFDS data directory with the prepared `mnist` and `cifar10`."""
    return _real_data("tensorflow_datasets")


@pytest.fixture(scope="session")
def real_text_dir() -> Path:
    """The folder holding `trec/` and `emotion/` raw text files."""
    return _real_data("datasets")


# --- tiny copies in the real formats (tests/tiny_datasets.py) ---------------------------------------------

@pytest.fixture(scope="session")
def tiny_tfds_dir(tmp_path_factory) -> Path:
    return write_tiny_tfds(tmp_path_factory.mktemp("tfds"))


@pytest.fixture(scope="session")
def tiny_text_dir(tmp_path_factory) -> Path:
    return write_tiny_text(tmp_path_factory.mktemp("text"))
