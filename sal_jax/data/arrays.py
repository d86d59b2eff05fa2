"""In-memory datasets and deterministic, fixed-shape batching.

Every dataset the project uses fits in host memory, so a split is held as NumPy arrays and batches are
sliced from it. Batches always have the same shape: the ragged last batch is padded and carries
per-example weights of 0 for the padding, so the jitted step compiles once and padding never counts.
"""
from __future__ import annotations

import dataclasses
import itertools
from typing import Iterator

import numpy as np

from sal_jax.errors import ConfigError

Batch = dict[str, np.ndarray]


@dataclasses.dataclass(frozen=True)
class ArrayDataset:
    """A classification dataset held in memory.

    Images are float32 arrays (N, H, W, C) or (N, D); text is int32 token ids (N, L) with 0 as padding.
    Labels are 1-D integer class ids in [0, num_classes). Construction checks sizes, label dtypes and
    ranges, that every input is finite and that both splits' examples have one shape, so a bad dataset
    fails here, before training.
    """

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    num_classes: int
    vocab_size: int | None = None  # text datasets: token ids are in [0, vocab_size)

    def __post_init__(self) -> None:
        for split, x, y in (("train", self.x_train, self.y_train), ("test", self.x_test, self.y_test)):
            x, y = np.asarray(x), np.asarray(y)
            if len(x) != len(y):
                raise ConfigError(f"dataset {self.name!r}: {split} split has {len(x)} inputs but {len(y)} labels")
            if len(y) == 0:
                raise ConfigError(f"dataset {self.name!r}: {split} split is empty")
            # Float labels would be cast to int silently (2.7 -> 2), and one-hot labels are floats too.
            if not np.issubdtype(y.dtype, np.integer) or y.ndim != 1:
                raise ConfigError(f"dataset {self.name!r}: y_{split} must be a 1-D integer array of class ids, "
                                  f"got dtype {y.dtype}, shape {y.shape}")
            bad = (y < 0) | (y >= self.num_classes)
            if bad.any():
                i = int(np.argmax(bad))
                raise ConfigError(
                    f"dataset {self.name!r}: {split} label {int(y[i])} at index {i} is outside "
                    f"[0, {self.num_classes}) (num_classes={self.num_classes})")
            i = first_non_finite(x)
            if i is not None:
                raise ConfigError(f"dataset {self.name!r}: x_{split} has a non-finite value (NaN or inf) in "
                                  f"example {i}; every input must be finite")
        if np.shape(self.x_test)[1:] != np.shape(self.x_train)[1:]:  # the levels are built for x_train's shape
            raise ConfigError(f"dataset {self.name!r}: x_test examples have shape {np.shape(self.x_test)[1:]} but "
                              f"x_train examples have {np.shape(self.x_train)[1:]}; both splits need the same")


def first_non_finite(x: np.ndarray, block: int = 4096) -> int | None:
    """Index of the first example of `x` holding a NaN or inf, or None. Checked in blocks of examples:
    a whole-split mask would double a large image split's memory."""
    if not np.issubdtype(x.dtype, np.inexact):
        return None  # integer inputs (token ids) are always finite
    for start in range(0, len(x), block):
        finite = np.isfinite(x[start:start + block]).reshape(min(block, len(x) - start), -1).all(axis=1)
        if not finite.all():
            return start + int(np.argmin(finite))
    return None


def epoch_order(num_examples: int, seed: int, *stream: int) -> np.ndarray:
    """The example order of one epoch: a pure function of the seed and a stream id (level, round, epoch).

    Pure so that any run, resumed or not, sees the same batches at the same position.
    """
    return np.random.default_rng([seed, *stream]).permutation(num_examples)


def num_batches(num_examples: int, batch_size: int) -> int:
    return -(-num_examples // batch_size)


def batch_indices(num_examples: int, batch_size: int, order: np.ndarray | None = None
                  ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(example indices, weights) of each fixed-size batch in `order` (default: stored order). The last
    batch is padded with a real example of weight 0, so every batch has the same shape."""
    order = np.arange(num_examples) if order is None else order
    for start in range(0, num_examples, batch_size):
        idx = order[start:start + batch_size]
        weight = np.ones(batch_size, np.float32)
        pad = batch_size - len(idx)
        if pad:
            weight[len(idx):] = 0.0
            idx = np.concatenate([idx, np.full(pad, idx[0])])  # any real example; its weight is 0
        yield idx, weight


def batches(x: np.ndarray, y: np.ndarray, batch_size: int, order: np.ndarray | None = None,
            rows: np.ndarray | None = None, extras: dict[str, np.ndarray] | None = None,
            start: int = 0, stop: int | None = None) -> Iterator[Batch]:
    """Yields fixed-size batches {x, y, weight} in `order` (default: stored order); the last is padded.

    rows: only these rows of every batch (one process's share of a global batch); only they are gathered.
    extras: more per-example arrays (e.g. cached teacher outputs), batched alongside under their keys.
    start, stop: only batches start..stop; the ones before are skipped without being gathered.
    """
    for idx, weight in itertools.islice(batch_indices(len(x), batch_size, order), start, stop):
        if rows is not None:
            idx, weight = idx[rows], weight[rows]
        yield {"x": x[idx], "y": y[idx].astype(np.int32), "weight": weight,
               **{key: array[idx] for key, array in (extras or {}).items()}}
