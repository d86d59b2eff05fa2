"""Sweeps over any config keys: the points of `config.sweep.grid` / `config.sweep.points`.

    --config.sweep.grid="(('guidance.hidden_weight', (0.1, 1.0, 10.0)), ('guidance.temperature', (1.0, 4.0)))"
    --config.sweep.points="((('guidance.distance', 'cosine'), ('guidance.hidden_weight', 0.5)),)"

A grid is the Cartesian product of its keys' values; `points` lists points explicitly (for keys that
vary together); both together: the grid's points, then the listed ones. sal_jax.train runs every point
at every training-set size with the same seeds, SAL and its baselines each time, so that each point's
SAL-minus-plain differences are paired per seed.
"""
from __future__ import annotations

import itertools
import re
from typing import Any, Sequence

import ml_collections

from sal_jax.config import unknown_key, with_values
from sal_jax.errors import ConfigError

Point = dict[str, Any]  # dotted config key -> value


def sweep_points(config: ml_collections.ConfigDict) -> list[Point]:
    """The sweep's points ([{}] without a sweep); every key checked against `config`, in one line."""
    grid, listed = config.sweep.grid, config.sweep.points
    for key, values in _pairs(grid, "config.sweep.grid"):
        if isinstance(values, (str, bytes)) or not isinstance(values, Sequence) or not values:
            raise ConfigError(f"config.sweep.grid: {key!r} needs a non-empty sequence of values, got {values!r}")
    keys = [key for key, _ in _pairs(grid, "config.sweep.grid")]
    points = [dict(zip(keys, values)) for values in itertools.product(*(v for _, v in grid))] if grid else []
    for i, point in enumerate(listed):
        points.append(dict(_pairs(point, f"config.sweep.points[{i}]")))
    for point in points:
        for key in point:
            _check_key(config, key)
    return points or [{}]


def _pairs(value: Any, field: str) -> list[tuple[str, Any]]:
    """((key, value), ...) as a list, or one line saying what the field needs."""
    pairs = list(value)
    if not all(isinstance(p, (tuple, list)) and len(p) == 2 and isinstance(p[0], str) for p in pairs):
        raise ConfigError(f"{field}: needs ((\"dotted.key\", value), ...), got {value!r}")
    return [tuple(p) for p in pairs]


def _check_key(config: ml_collections.ConfigDict, key: str) -> None:
    problem = unknown_key(config, key)
    if problem:
        raise ConfigError(f"config.sweep: {key!r}: {problem}")
    if key.startswith(("sweep.", "seed", "num_seeds")):
        raise ConfigError(f"config.sweep: {key!r} cannot be swept (seeds and sizes are every point's)")
    node = config
    for part in key.split("."):
        node = node[part]
    if isinstance(node, ml_collections.ConfigDict):
        raise ConfigError(f"config.sweep: {key!r} is a section, not a value")


def apply_point(config: ml_collections.ConfigDict, point: Point) -> ml_collections.ConfigDict:
    """A copy of `config` with the point's values set."""
    return with_values(config, point)


def point_label(point: Point) -> str:
    """'hidden_weight=0.1, temperature=1.0' (each key's last part), '' for no point."""
    return ", ".join(f"{key.rsplit('.', 1)[-1]}={value}" for key, value in point.items())


def point_tag(point: Point) -> str:
    """The point as a folder and file name part: 'hidden_weight0.1_temperature1.0', '' for no point."""
    return re.sub(r"[^A-Za-z0-9_.=-]+", "", "_".join(f"{key.rsplit('.', 1)[-1]}{value}"
                                                   for key, value in point.items()))
