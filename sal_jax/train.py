"""`train_and_evaluate(config, workdir)`: SAL, its ablations and baselines over seeds and training-set
sizes, written to workdir as results.json, results.md and plots."""
from __future__ import annotations

import contextlib
import functools
import json
import os
import sys
import time
from typing import Any, Sequence

import jax
import ml_collections
import numpy as np

from sal_jax.checkpoint import Preempted
from sal_jax.chunks import ProgramCache
from sal_jax.config import apply_quick, check_values, flat_config, with_values
from sal_jax.data import load_dataset
from sal_jax.determinism import apply_determinism
from sal_jax.errors import TrainingDiverged
from sal_jax.ladder import train_ladder, train_members
from sal_jax.members import MEMBER_SETTINGS, split_members
from sal_jax.models import make_ladder
from sal_jax import families, report
from sal_jax.sweep import sweep_points
from sal_jax.validation import check_workdir, validate_members, validate_run

Cell = tuple[dict[str, Any], ml_collections.ConfigDict, Any, list]  # record, config, dataset, levels
Training = tuple[int, int]  # (cell index, seed): one ladder run of a cell
ABLATIONS = {"hidden_only": {"guidance.output_weight": 0.0}, "output_only": {"guidance.hidden_weight": 0.0}}


def sweep_cells(config: ml_collections.ConfigDict) -> list[tuple[int, int]]:
    """(per_class, epochs) of every cell: the sweep, or the single setting of config.data / config.train."""
    return list(zip(config.sweep.per_class, config.sweep.epochs)) or [(config.data.per_class, config.train.epochs)]


def cell_seeds(config: ml_collections.ConfigDict) -> list[int]:
    return list(range(config.seed, config.seed + config.num_seeds))


def program_groups(configs: Sequence[ml_collections.ConfigDict]) -> list[list[Training]]:
    """Every cell's trainings (cell i's config: configs[i]) in the groups that train as members of one
    program: a cell's seeds, and those of the cells whose configs differ only in settings that change no
    program (sal_jax.members.MEMBER_SETTINGS; a λ of 0 only with λ 0), config.train.ensemble at a time
    (0: all of them); each training alone when the ensemble is 1 or the family cannot stack its members
    (said once on stderr). Cells in order, seeds in order within a cell."""
    programs: dict[str, list[int]] = {}
    for i, config in enumerate(configs):
        programs.setdefault(program_signature(config), []).append(i)
    groups = []
    for cells in programs.values():
        config = configs[cells[0]]
        trainings = [(cell, seed) for cell in cells for seed in cell_seeds(config)]
        size = config.train.ensemble or len(trainings)
        family = families.find(config.model.family)
        if size > 1 and family is not None and family.in_turn:
            _note_in_turn(family.name, family.in_turn)
            size = 1
        groups += [trainings[i:i + size] for i in range(0, len(trainings), size)]
    return sorted(groups, key=lambda group: group[0])  # the cells' order, as results list them


def program_signature(config: ml_collections.ConfigDict) -> str:
    """What a training's program depends on of its config: everything but the seed and the members'
    settings, of which only whether each λ is 0 (a λ of 0 leaves its term out)."""
    flat = {k: v for k, v in flat_config(config).items() if k != "seed" and k not in MEMBER_SETTINGS}
    zero = {k: flat_config(config)[k] == 0 for k in MEMBER_SETTINGS if k.endswith("_weight")}
    return json.dumps([flat, zero], sort_keys=True, default=str)


@functools.cache  # once a run, not once a cell
def _note_in_turn(family: str, reason: str) -> None:
    print(f"note: family {family!r} trains its seeds in turn, not as members of one program: {reason}",
          file=sys.stderr)


def group_folder(tags: Sequence[str], group: Sequence[Training]) -> str:
    """A group's checkpoint folder under workdir/checkpoints: <cell>/seed_<s>, <cell>/seeds_<a>-<b> (a
    cell's seeds), or <first cell>_and_<n>_more/from_seed_<s> (members from several sweep points)."""
    cells = list(dict.fromkeys(cell for cell, _ in group))
    seeds = [seed for _, seed in group]
    if len(cells) > 1:
        return os.path.join(f"{tags[cells[0]]}_and_{len(cells) - 1}_more", f"from_seed_{seeds[0]}")
    return os.path.join(tags[cells[0]], f"seed_{seeds[0]}" if len(seeds) == 1 else f"seeds_{seeds[0]}-{seeds[-1]}")


def run_group(levels, data, configs: Sequence[ml_collections.ConfigDict], progress: bool,
              checkpoint_dir: str | None, log_dirs: Sequence[str] | None = None,
              program_cache: ProgramCache | None = None) -> list[dict[str, Any]]:
    """SAL with both plain baselines, then (if asked) each ablation, for each of the trainings `configs`
    (each with its seed and sweep point): one alone, or several as members of one program
    (sal_jax.ladder.train_members; sal_jax.members.split_members says what may differ). Each ladder run is
    checkpointed in its own subdirectory of `checkpoint_dir` (<sal|hidden_only|output_only>; None: no
    checkpoints) and logs each training's TensorBoard events in log_dirs[i]/<name> (None: none).
    `program_cache`: compiled levels shared with other trainings (sal_jax.chunks.ProgramCache). One record
    per training."""
    def ladder(values: dict[str, Any], name: str) -> list[Any]:
        runs = [with_values(config, values) for config in configs]
        checkpoints = None if checkpoint_dir is None else os.path.join(checkpoint_dir, name)
        logs = None if log_dirs is None else [os.path.join(log_dir, name) for log_dir in log_dirs]
        if len(runs) == 1:
            return [train_ladder(levels, data, runs[0], progress=progress, checkpoint_dir=checkpoints,
                                 log_dir=logs and logs[0], program_cache=program_cache, checked=True)]
        config, seeds, settings = split_members(runs)
        return train_members(levels, data, config, seeds, progress=progress, checkpoint_dir=checkpoints,
                             log_dirs=logs, program_cache=program_cache, checked=True, settings=settings)

    records = [report.ladder_record(result, config.seed) for result, config in zip(ladder({}, "sal"), configs)]
    if configs[0].ablations:
        for name, values in ABLATIONS.items():
            ablation = {**values, "baselines.epoch_matched": False, "baselines.time_matched": False,
                        "baselines.compute_matched": False}
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
            dataset = {"name": data.name, "train": len(data.x_train), "test": len(data.x_test),
                       "majority": majority_rate(data.y_test)}
            cells.append(({"per_class": per_class, "point": point, "epochs": cell_config.train.epochs,
                           "dataset": dataset}, cell_config, data, levels))
    for group in program_groups([cell[1] for cell in cells]):
        if len(group) > 1:
            validate_members(cells[group[0][0]][1])
    return cells


def majority_rate(labels: np.ndarray) -> float:
    """The test accuracy of always answering the most frequent class: what a model must beat to inform."""
    return float(np.bincount(np.asarray(labels, np.int64)).max() / len(labels))


def _train_cells(cells: list[Cell], config: ml_collections.ConfigDict, workdir: str, progress: bool) -> dict[str, Any]:
    clock = WallTimes(os.path.join(workdir, "checkpoints", "wall_times.json") if config.checkpoint.enabled else None)
    tags = [report.cell_tag(cell[0]) for cell in cells]
    records: list[dict[int, dict[str, Any]]] = [{} for _ in cells]  # per cell: seed -> record
    program_caches: dict[int, ProgramCache] = {}  # per first cell: its trainings share levels, so compile once
    try:
        for group in program_groups([cell[1] for cell in cells]):
            first = group[0][0]
            _, _, data, levels = cells[first]
            configs = [with_values(cells[cell][1], {"seed": seed}) for cell, seed in group]
            checkpoint_dir = (os.path.join(workdir, "checkpoints", group_folder(tags, group))
                              if config.checkpoint.enabled else None)
            log_dirs = ([os.path.join(workdir, "tensorboard", tags[cell], f"seed_{seed}") for cell, seed in group]
                        if config.tensorboard else None)
            group_records = run_group(levels, data, configs, progress, checkpoint_dir, log_dirs,
                                      program_caches.setdefault(first, ProgramCache()))
            for (cell, seed), record in zip(group, group_records):
                records[cell][seed] = record
            clock.save()
    except (Preempted, TrainingDiverged):  # stopped with checkpoints kept: a rerun resumes the work they hold
        clock.save()
        raise
    results = {"config": config.to_dict(),
               "cells": [{**cell[0], "runs": [runs[seed] for seed in sorted(runs)]} for cell, runs in zip(cells, records)]}
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
