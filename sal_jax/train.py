"""`train_and_evaluate(config, workdir)`: SAL, its ablations and baselines over seeds and training-set
sizes, written to workdir as results.json, results.md and plots."""
from __future__ import annotations

import json
import os
import time
from typing import Any

import jax
import ml_collections

from sal_jax.chunks import ProgramCache
from sal_jax.data import load_dataset
from sal_jax.determinism import apply_determinism
from sal_jax.errors import ConfigError, is_integer
from sal_jax.ladder import train_ladder
from sal_jax.models import make_ladder
from sal_jax import report
from sal_jax.sweep import apply_point, sweep_points
from sal_jax.validation import check_workdir, validate_run

ABLATIONS = {"hidden_only": {"output_weight": 0.0}, "output_only": {"hidden_weight": 0.0}}


def apply_quick(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """A copy with `config.quick_overrides` applied when `config.quick` is set."""
    config = ml_collections.ConfigDict(config.to_dict())
    if config.quick:
        for key, value in config.quick_overrides:
            *path, leaf = key.split(".")
            node = config
            for part in path:
                node = node[part]
            node[leaf] = value
    return config


def sweep_cells(config: ml_collections.ConfigDict) -> list[tuple[int, int]]:
    """(per_class, epochs) of every cell: the sweep, or the single setting of config.data / config.train."""
    if len(config.sweep.per_class) != len(config.sweep.epochs):
        raise ConfigError(f"config.sweep.epochs: needs one entry per config.sweep.per_class entry, got "
                          f"{len(config.sweep.epochs)} for {len(config.sweep.per_class)}")
    return list(zip(config.sweep.per_class, config.sweep.epochs)) or [(config.data.per_class, config.train.epochs)]


def with_values(config: ml_collections.ConfigDict, **sections: dict[str, Any]) -> ml_collections.ConfigDict:
    """A copy of `config` with e.g. with_values(c, train={"epochs": 3}) applied."""
    copy = ml_collections.ConfigDict(config.to_dict())
    for section, values in sections.items():
        if isinstance(values, dict):
            copy[section].update(values)
        else:
            copy[section] = values
    return copy


def run_seed(levels, data, config: ml_collections.ConfigDict, progress: bool,
             checkpoint_dir: str | None, log_dir: str | None = None,
             program_cache: ProgramCache | None = None) -> dict[str, Any]:
    """SAL with both plain baselines, then (if asked) each ablation, for one seed; each ladder run is
    checkpointed in its own subdirectory of `checkpoint_dir` (None: no checkpoints), and logs its
    TensorBoard events in its own subdirectory of `log_dir` (None: none). `program_cache`: compiled
    levels shared with other seeds (sal_jax.chunks.ProgramCache)."""
    def directory(root: str | None, name: str) -> str | None:
        return None if root is None else os.path.join(root, f"seed_{config.seed}", name)

    def ladder(config: ml_collections.ConfigDict, name: str):
        return train_ladder(levels, data, config, progress=progress, checkpoint_dir=directory(checkpoint_dir, name),
                            log_dir=directory(log_dir, name), program_cache=program_cache)

    result = ladder(config, "sal")
    record = report.ladder_record(result, config.seed)
    if config.ablations:
        for name, guidance in ABLATIONS.items():
            ablation = with_values(config, guidance=guidance,
                                   baselines={"epoch_matched": False, "time_matched": False})
            result = ladder(ablation, name)
            record[name] = {"sal": [report.run_record(run) for run in result.sal],
                            "sal_train_time": result.sal_train_time}
    return record


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str, progress: bool = True) -> dict[str, Any]:
    """Every cell of the sweep, `config.num_seeds` seeds each (config.seed, config.seed + 1, ...): a cell
    is a training-set size (config.sweep.per_class) at a point of config.sweep.grid / .points
    (sal_jax.sweep), named by `report.cell_tag`.

    All data is loaded and every cell's config checked before the first training step. With
    config.checkpoint.enabled, every ladder run is checkpointed under workdir/checkpoints/<cell>/seed_<s>/
    <sal|hidden_only|output_only> and a rerun with the same workdir resumes where it stopped. With
    config.tensorboard, each level's training is a TensorBoard run under workdir/tensorboard/<cell>/
    seed_<s>/<sal|hidden_only|output_only>/<level1|...|plain_time_matched>.
    """
    check_workdir(workdir)  # before loading data: a bad workdir would otherwise fail after training
    config = apply_quick(config)
    apply_determinism(config.deterministic)  # before loading data or building levels touches a device
    if not is_integer(config.num_seeds) or config.num_seeds < 1:
        raise ConfigError(f"config.num_seeds: must be a positive integer, got {config.num_seeds!r}")
    cells, datasets = [], {}
    for per_class, epochs in sweep_cells(config):
        for point in sweep_points(config):
            cell_config = apply_point(with_values(config, data={"per_class": per_class}, train={"epochs": epochs}),
                                      point)
            key = json.dumps([cell_config.data.to_dict(), cell_config.model.family], sort_keys=True)
            if key not in datasets:  # points that leave the data alone share one copy
                datasets[key] = load_dataset(cell_config.data, cell_config.model.family)
            data = datasets[key]
            levels = make_ladder(cell_config.model, data.num_classes, data.vocab_size)
            validate_run(levels, data, cell_config)
            cells.append(({"per_class": per_class, "point": point, "epochs": cell_config.train.epochs,
                           "dataset": {"name": data.name, "train": len(data.x_train), "test": len(data.x_test)}},
                          cell_config, data, levels))

    start, results = time.perf_counter(), {"config": config.to_dict(), "cells": []}
    for cell, cell_config, data, levels in cells:
        tag = report.cell_tag(cell)
        checkpoint_dir = os.path.join(workdir, "checkpoints", tag) if config.checkpoint.enabled else None
        log_dir = os.path.join(workdir, "tensorboard", tag) if config.tensorboard else None
        program_cache = ProgramCache()  # a cell's seeds train the same levels: each compiles once
        records = [run_seed(levels, data, with_values(cell_config, seed=seed), progress, checkpoint_dir, log_dir,
                            program_cache)
                   for seed in range(config.seed, config.seed + config.num_seeds)]
        results["cells"].append({**cell, "runs": records})
    results["wall_time"] = time.perf_counter() - start
    if jax.process_index() > 0:  # several processes share one workdir (and agree on the results): one writes
        return {**results, "table": ""}
    with open(os.path.join(workdir, "results.json"), "w") as f:
        json.dump(results, f, indent=1)
    results["table"] = report.write_report(results, workdir)
    return results
