"""`train_and_evaluate(config, workdir)`: SAL, its ablations and baselines over seeds and training-set
sizes, written to workdir as results.json, results.md and plots."""
from __future__ import annotations

import contextlib
import functools
import json
import os
import sys
import time
from typing import Any

import jax
import ml_collections

from sal_jax.checkpoint import Preempted
from sal_jax.chunks import ProgramCache
from sal_jax.config import apply_quick, check_values, with_values
from sal_jax.data import load_dataset
from sal_jax.determinism import apply_determinism
from sal_jax.errors import TrainingDiverged
from sal_jax.ladder import train_ladder, train_members
from sal_jax.models import make_ladder
from sal_jax import families, report
from sal_jax.sweep import sweep_points
from sal_jax.validation import check_workdir, validate_members, validate_run

Cell = tuple[dict[str, Any], ml_collections.ConfigDict, Any, list, list]  # record, config, dataset, levels, seed groups
ABLATIONS = {"hidden_only": {"guidance.output_weight": 0.0}, "output_only": {"guidance.hidden_weight": 0.0}}


def sweep_cells(config: ml_collections.ConfigDict) -> list[tuple[int, int]]:
    """(per_class, epochs) of every cell: the sweep, or the single setting of config.data / config.train."""
    return list(zip(config.sweep.per_class, config.sweep.epochs)) or [(config.data.per_class, config.train.epochs)]


def seed_groups(config: ml_collections.ConfigDict) -> list[tuple[int, ...]]:
    """A cell's seeds in the groups that train as members of one program (config.train.ensemble): each a
    group of one when the family cannot stack its members (said once on stderr) or the ensemble is 1."""
    seeds = list(range(config.seed, config.seed + config.num_seeds))
    size = config.train.ensemble or len(seeds)
    family = families.find(config.model.family)
    if size > 1 and family is not None and family.in_turn:
        _note_in_turn(family.name, family.in_turn)
        size = 1
    return [tuple(seeds[i:i + size]) for i in range(0, len(seeds), size)]


@functools.cache  # once a run, not once a cell
def _note_in_turn(family: str, reason: str) -> None:
    print(f"note: family {family!r} trains its seeds in turn, not as members of one program: {reason}",
          file=sys.stderr)


def run_seeds(levels, data, config: ml_collections.ConfigDict, seeds: tuple[int, ...], progress: bool,
              checkpoint_dir: str | None, log_dir: str | None = None,
              program_cache: ProgramCache | None = None) -> list[dict[str, Any]]:
    """SAL with both plain baselines, then (if asked) each ablation, for each of `seeds`: one seed alone,
    or several as members of one program (sal_jax.ladder.train_members). Each ladder run is checkpointed
    in its own subdirectory of `checkpoint_dir` (seed_<s>/<name>, members seeds_<first>-<last>/<name>;
    None: no checkpoints) and logs each seed's TensorBoard events in log_dir/seed_<s>/<name> (None: none).
    `program_cache`: compiled levels shared with other seeds (sal_jax.chunks.ProgramCache). One record
    per seed."""
    group = f"seed_{seeds[0]}" if len(seeds) == 1 else f"seeds_{seeds[0]}-{seeds[-1]}"

    def ladder(config: ml_collections.ConfigDict, name: str) -> list[Any]:
        checkpoints = None if checkpoint_dir is None else os.path.join(checkpoint_dir, group, name)
        logs = None if log_dir is None else [os.path.join(log_dir, f"seed_{seed}", name) for seed in seeds]
        if len(seeds) == 1:
            return [train_ladder(levels, data, with_values(config, {"seed": seeds[0]}), progress=progress,
                                 checkpoint_dir=checkpoints, log_dir=logs and logs[0], program_cache=program_cache,
                                 checked=True)]
        return train_members(levels, data, config, seeds, progress=progress, checkpoint_dir=checkpoints,
                             log_dirs=logs, program_cache=program_cache, checked=True)

    records = [report.ladder_record(result, seed) for result, seed in zip(ladder(config, "sal"), seeds)]
    if config.ablations:
        for name, values in ABLATIONS.items():
            ablation = with_values(config, {**values, "baselines.epoch_matched": False,
                                            "baselines.time_matched": False})
            for record, result in zip(records, ladder(ablation, name)):
                record[name] = {"sal": [report.run_record(run) for run in result.sal],
                                "sal_train_time": result.sal_train_time}
    return records


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str, progress: bool = True,
                       prepared: bool = False) -> dict[str, Any]:
    """Every cell of the sweep, `config.num_seeds` seeds each (config.seed, config.seed + 1, ...): a cell
    is a training-set size (config.sweep.per_class) at a point of config.sweep.grid / .points
    (sal_jax.sweep), named by `report.cell_tag`.

    All data is loaded and every cell's config checked before the first training step; a run refused
    there leaves none of the folders it made. With config.checkpoint.enabled, every ladder run is
    checkpointed under workdir/checkpoints/<cell>/seed_<s>/<sal|hidden_only|output_only> and a rerun with
    the same workdir resumes where it stopped; results' "wall_times" lists each invocation's time spent on
    those checkpoints (`WallTimes`), "wall_time" is their sum. With config.tensorboard, each level's
    training is a TensorBoard run under workdir/tensorboard/<cell>/seed_<s>/<sal|hidden_only|output_only>/
    <level1|...|plain_time_matched>.

    `prepared`: the caller (sal_jax.main) has applied config.deterministic before the backend started, as
    it must before joining other processes: it is not applied again (once per run).
    """
    config = apply_quick(config)
    check_values(config)  # before any folder is made or data loaded
    made = _missing_folders(workdir)
    try:
        check_workdir(workdir)  # before loading data: a bad workdir would otherwise fail after training
        if not prepared:  # before loading data or building levels touches a device
            apply_determinism(config.deterministic)
        return _train_cells(_prepare_cells(config), config, workdir, progress)
    except BaseException:
        for folder in made:  # deepest first; rmdir removes only empty folders: never anything written
            with contextlib.suppress(OSError):
                os.rmdir(folder)
        raise


def _missing_folders(path: str) -> list[str]:
    """`path` and those of its parents that do not exist yet, deepest first."""
    missing, path = [], os.path.abspath(path)
    while not os.path.exists(path):
        missing.append(path)
        path = os.path.dirname(path)
    return missing


def _prepare_cells(config: ml_collections.ConfigDict) -> list[Cell]:
    """Every cell, its data loaded and everything checked."""
    cells, datasets = [], {}
    for per_class, epochs in sweep_cells(config):
        for point in sweep_points(config):
            cell_config = with_values(config, {"data.per_class": per_class, "train.epochs": epochs, **point})
            key = json.dumps([cell_config.data.to_dict(), cell_config.model.family], sort_keys=True)
            if key not in datasets:  # points that leave the data alone share one copy
                datasets[key] = load_dataset(cell_config.data, cell_config.model.family)
            data = datasets[key]
            levels = make_ladder(cell_config.model, data.num_classes, data.vocab_size)
            validate_run(levels, data, cell_config)
            groups = seed_groups(cell_config)
            if any(len(seeds) > 1 for seeds in groups):
                validate_members(cell_config)
            cells.append(({"per_class": per_class, "point": point, "epochs": cell_config.train.epochs,
                           "dataset": {"name": data.name, "train": len(data.x_train), "test": len(data.x_test)}},
                          cell_config, data, levels, groups))
    return cells


def _train_cells(cells: list[Cell], config: ml_collections.ConfigDict, workdir: str, progress: bool) -> dict[str, Any]:
    clock = WallTimes(os.path.join(workdir, "checkpoints", "wall_times.json") if config.checkpoint.enabled else None)
    results = {"config": config.to_dict(), "cells": []}
    try:
        for cell, cell_config, data, levels, groups in cells:
            tag = report.cell_tag(cell)
            checkpoint_dir = os.path.join(workdir, "checkpoints", tag) if config.checkpoint.enabled else None
            log_dir = os.path.join(workdir, "tensorboard", tag) if config.tensorboard else None
            program_cache = ProgramCache()  # a cell's seeds train the same levels: each compiles once
            records = []
            for seeds in groups:
                records += run_seeds(levels, data, cell_config, seeds, progress, checkpoint_dir, log_dir, program_cache)
                clock.save()
            results["cells"].append({**cell, "runs": records})
    except (Preempted, TrainingDiverged):  # stopped with checkpoints kept: a rerun resumes the work they hold
        clock.save()
        raise
    results["wall_times"] = clock.save()
    results["wall_time"] = sum(results["wall_times"])
    if jax.process_index() > 0:  # several processes share one workdir (and agree on the results): one writes
        return {**results, "table": ""}
    with open(os.path.join(workdir, "results.json"), "w") as f:
        json.dump(results, f, indent=1)
    results["table"] = report.write_report(results, workdir)
    return results


class WallTimes:
    """The wall time of each invocation that trained on one workdir's checkpoints (resumed from them),
    this one's last, kept in `path` (None: not kept) as the run goes: at each seed's end, and when a run
    stops with its checkpoints kept (SIGTERM, Ctrl-C, divergence). A rerun that resumes them counts that
    time too; deleting the checkpoints folder starts the count afresh with them."""

    def __init__(self, path: str | None):
        self.path, self.start, self.earlier = path, time.perf_counter(), []
        if path and os.path.exists(path):
            with open(path) as f:
                self.earlier = json.load(f)

    def save(self) -> list[float]:
        """Every invocation's seconds so far, this one's up to now; saved by process 0."""
        times = [*self.earlier, time.perf_counter() - self.start]
        if self.path and jax.process_index() == 0:
            os.makedirs(os.path.dirname(self.path), exist_ok=True)
            with open(f"{self.path}.tmp", "w") as f:
                json.dump(times, f)
            os.replace(f"{self.path}.tmp", self.path)  # a kill while writing leaves the last complete list
        return times
