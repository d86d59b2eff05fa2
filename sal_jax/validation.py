"""Checks of user input that run before any training, each failing with one line naming the field."""
from __future__ import annotations

import os
from typing import Sequence

import flax.linen as nn
import jax
import ml_collections

from sal_jax import families, members, parallel
from sal_jax.config import check_train_values
from sal_jax.data.arrays import ArrayDataset
from sal_jax.errors import ConfigError, is_integer, is_number
from sal_jax.guidance import SCHEDULES
from sal_jax.levels import abstract_level, num_params
from sal_jax.losses import DISTANCES, FEATURE_NORMS, LAYER_REDUCTIONS, align_layers, parse_layer_map
from sal_jax.optimizers import OPTIMIZERS


def validate_training(config: ml_collections.ConfigDict, data: ArrayDataset) -> None:
    """The training settings, and that they fit the dataset."""
    train = config.train
    check_train_values(train)
    if not is_integer(train.steps_per_call) or train.steps_per_call < 0:
        raise ConfigError(f"config.train.steps_per_call: must be 0 (chosen by the library) or a positive "
                          f"integer, got {train.steps_per_call!r}")
    if train.optimizer not in OPTIMIZERS:
        raise ConfigError(f"config.train.optimizer: unknown {train.optimizer!r}; choose from {list(OPTIMIZERS)}")
    if config.data.augment and data.x_train.ndim != 4:
        raise ConfigError(f"config.data.augment: crop-and-flip augmentation needs images (N, H, W, C), "
                          f"{data.name!r} has inputs of shape {data.x_train.shape[1:]}")
    if train.batch_size > len(data.x_train):
        raise ConfigError(f"config.train.batch_size: {train.batch_size} is larger than the training set "
                          f"of {data.name!r} ({len(data.x_train)} examples)")
    data_size, fsdp = parallel.mesh_shape(config.parallel, jax.device_count(), jax.process_count())
    parallel.check_batch_size(train.batch_size, data_size, fsdp)
    family = families.find(config.model.family)  # None: the user's own modules under a name of their own
    if family is not None:
        family.check(config)
    on_device_mb = config.parallel.data_on_device_mb
    if not is_number(on_device_mb) or not on_device_mb >= 0:  # `not >=`: NaN fails too
        raise ConfigError(f"config.parallel.data_on_device_mb: must be a number >= 0, got {on_device_mb!r}")


def validate_members(config: ml_collections.ConfigDict) -> None:
    """What members (sal_jax.member_loop) cannot do yet, named before training."""
    if config.parallel.fsdp != 1:
        raise ConfigError("config.parallel.fsdp: members split over their own mesh axis (ensemble), beside a "
                          "data axis (config.parallel.data) but not FSDP yet: set fsdp=1 or config.train.ensemble=1")
    _, data = members.member_mesh_shape(1, config.parallel, jax.device_count())
    parallel.check_batch_size(config.train.batch_size, data, 1)
    if config.guidance.gradient_diagnostics:
        raise ConfigError("config.guidance.gradient_diagnostics: not computed for members yet; set "
                          "config.train.ensemble=1 or turn it off")


def validate_run(levels: Sequence[nn.Module], data: ArrayDataset, config: ml_collections.ConfigDict) -> None:
    """Everything a ladder run needs, checked before its first step."""
    validate_training(config, data)
    validate_inputs(levels, data)
    validate_ladder(levels, data.x_train[:1], config.guidance)


def validate_inputs(levels: Sequence[nn.Module], data: ArrayDataset) -> None:
    """The dataset's inputs have the rank (and, for text, the dtype) each level of a registered family reads."""
    x = data.x_train
    for k, level in enumerate(levels, 1):
        family = families.of_level(level)
        if family is None:
            continue
        fits, expected = families.INPUT_KINDS[family.inputs]
        if not fits(x):
            raise ConfigError(f"dataset {data.name!r}: x_train has shape {x.shape} ({x.dtype}), but level {k} "
                              f"({family.module.__name__}) needs {expected}")


def check_workdir(workdir: str) -> None:
    """Creates `workdir` (if needed) and checks that results can be written there: before any data is
    loaded, rather than failing when the results are written after training."""
    if os.path.exists(workdir) and not os.path.isdir(workdir):
        raise ConfigError(f"workdir: {workdir!r} exists and is not a directory")
    try:
        os.makedirs(workdir, exist_ok=True)
    except OSError as error:  # a path component is a file, no permission, read-only file system
        raise ConfigError(f"workdir: cannot create {workdir!r}: {error.strerror or error}") from None
    if not os.access(workdir, os.W_OK | os.X_OK):
        raise ConfigError(f"workdir: {workdir!r} is not writable")


def validate_ladder(levels: Sequence[nn.Module], sample_x: jax.Array,
                    guidance: ml_collections.ConfigDict) -> None:
    """At least one level; each returns (logits, features) of one class count; complexity grows; the
    guidance settings and layer alignment hold for every teacher/student pair.

    Complexity is measured as the parameter count (from abstract inits: free), so the rule holds for
    user modules too: a level must have strictly more parameters than the level above it.
    """
    if not levels:
        raise ConfigError("config.model.levels: the ladder has no levels")
    outputs = [abstract_level(level, sample_x)[0] for level in levels]
    classes = {out[0].shape[-1] for out in outputs}
    if len(classes) != 1:
        raise ConfigError(f"config.model: levels disagree on the number of classes: {sorted(classes)}")
    _validate_guidance(guidance, [len(out[1]) for out in outputs])
    check_growth(levels, sample_x)


def check_growth(levels: Sequence[nn.Module], sample_x: jax.Array) -> None:
    """Each level has strictly more parameters (sparse levels: expected live ones) than the level above."""
    counts = [complexity(level, sample_x) for level in levels]
    for k in range(1, len(levels)):
        if counts[k] <= counts[k - 1]:
            raise ConfigError(
                f"config.model.levels: the ladder must grow in complexity, but level {k + 1} "
                f"({type(levels[k]).__name__}, {counts[k]:,.0f} params) is not larger than level {k} "
                f"({counts[k - 1]:,.0f} params)")


def complexity(level: nn.Module, sample_x: jax.Array) -> float:
    """A level's parameter count, or what its family counts instead (a sparse level: its expected live
    parameters, so a ladder may grow in density)."""
    family = families.of_level(level)
    return num_params(level, sample_x) if family is None else family.complexity(level, sample_x)


def _validate_guidance(guidance: ml_collections.ConfigDict, feature_counts: Sequence[int]) -> None:
    if guidance.distance not in DISTANCES:
        raise ConfigError(f"config.guidance.distance: unknown {guidance.distance!r}; choose from {list(DISTANCES)}")
    if guidance.schedule not in SCHEDULES:
        raise ConfigError(f"config.guidance.schedule: unknown {guidance.schedule!r}; choose from {list(SCHEDULES)}")
    for field, choices in (("layer_reduction", LAYER_REDUCTIONS), ("feature_norm", FEATURE_NORMS)):
        value = guidance.get(field, choices[0])  # a config made before the field existed: its default
        if value not in choices:
            raise ConfigError(f"config.guidance.{field}: unknown {value!r}; choose from {list(choices)}")
    if not is_number(guidance.temperature) or guidance.temperature <= 0:
        raise ConfigError(f"config.guidance.temperature: must be a positive number, got {guidance.temperature!r}")
    for field in ("hidden_weight", "output_weight"):
        value = guidance[field]
        if not is_number(value) or value < 0:
            raise ConfigError(f"config.guidance.{field}: must be a number >= 0, got {value!r}")
    mapping = parse_layer_map(guidance.layer_map)
    for k in range(1, len(feature_counts)):
        align_layers(feature_counts[k - 1], feature_counts[k], mapping)
