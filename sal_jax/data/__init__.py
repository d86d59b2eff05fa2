"""Datasets by name. Every loader returns an in-memory `ArrayDataset`; `load_dataset` is the one place a
config's `data` section becomes data, subset and checked against the model family."""
from __future__ import annotations

import ml_collections

from sal_jax import families
from sal_jax.data.arrays import ArrayDataset
from sal_jax.data.digits import load_digits_dataset
from sal_jax.data.images import IMAGE_DATASETS, load_image_dataset
from sal_jax.data.npz import load_npz_dataset
from sal_jax.data.subsets import per_class_subset
from sal_jax.data.tabular import TABULAR, load_tabular_dataset
from sal_jax.data.text import LABEL_NAMES, load_text_dataset
from sal_jax.errors import ConfigError

DATASETS = ("digits", *IMAGE_DATASETS, *LABEL_NAMES, *TABULAR, "npz")


def _inputs(family: str) -> str:
    """What the family's levels read (sal_jax.families): a name no family has, the user's own modules',
    reads arrays."""
    found = families.find(family)
    return "vectors" if found is None else found.inputs


def _load_full(data: ml_collections.ConfigDict, family: str) -> ArrayDataset:
    if data.name == "digits":  # digits stay 8x8x1 for families that read images
        return load_digits_dataset(flatten=_inputs(family) != "images")
    if data.name in IMAGE_DATASETS:
        return load_image_dataset(data.name, data.data_dir or None)
    if data.name in LABEL_NAMES:
        if not data.data_dir:
            raise ConfigError(f"config.data.data_dir: text dataset {data.name!r} needs the folder that holds "
                              f'trec/ and emotion/ (README, "Datasets")')
        return load_text_dataset(data.name, data.data_dir, max_len=data.max_len)[0]
    if data.name == "npz":
        return load_npz_dataset(data.path)
    if data.name in TABULAR:  # the split is fixed by data.subset_seed, like a per-class subset
        return load_tabular_dataset(data.name, split_seed=data.subset_seed)
    raise ConfigError(f"config.data.name: unknown dataset {data.name!r}; choose from {list(DATASETS)}")


def load_dataset(data: ml_collections.ConfigDict, family: str = "mlp") -> ArrayDataset:
    """The dataset `data.name`, cut to `data.per_class` training examples per class if > 0 (chosen by
    `data.subset_seed`, so SAL and every baseline of a run share it), shaped for the model family."""
    text, inputs = data.name in LABEL_NAMES, _inputs(family)
    if text != (inputs == "tokens"):
        readers = " or ".join(repr(name) for name in families.names("tokens"))
        raise ConfigError(f"config.model.family: {family!r} cannot read dataset {data.name!r} "
                          f"({'text needs' if text else 'only text goes with'} family {readers})")
    dataset = _load_full(data, family)
    if inputs == "images" and dataset.x_train.ndim != 4:
        raise ConfigError(f"config.model.family: {family!r} needs images (N, H, W, C), {data.name!r} has "
                          f"inputs of shape {dataset.x_train.shape[1:]}")
    if data.per_class:
        try:
            dataset = per_class_subset(dataset, data.per_class, data.subset_seed)
        except ConfigError as error:
            raise ConfigError(f"config.data.{error}") from None
    return dataset
