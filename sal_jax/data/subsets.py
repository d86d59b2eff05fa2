"""Class-balanced training subsets for the data-scarce regime."""
from __future__ import annotations

import dataclasses

import numpy as np

from sal_jax.data.arrays import ArrayDataset
from sal_jax.errors import ConfigError


def per_class_subset(dataset: ArrayDataset, per_class: int, seed: int) -> ArrayDataset:
    """The train split cut to exactly `per_class` examples of every class, chosen by `seed`; test unchanged.

    Examples keep their stored order (training shuffles anyway), so the subset is a pure function of
    (dataset, per_class, seed), and a too-large request fails instead of silently giving an unbalanced set.
    """
    if per_class <= 0:
        raise ConfigError(f"per_class must be positive, got {per_class}")
    rng = np.random.default_rng(seed)
    chosen = []
    for label in range(dataset.num_classes):
        members = np.flatnonzero(dataset.y_train == label)
        if len(members) < per_class:
            raise ConfigError(f"per_class={per_class} but class {label} of dataset {dataset.name!r} has only "
                              f"{len(members)} training examples")
        chosen.append(rng.choice(members, per_class, replace=False))
    index = np.sort(np.concatenate(chosen))
    return dataclasses.replace(dataset, x_train=dataset.x_train[index], y_train=dataset.y_train[index])
