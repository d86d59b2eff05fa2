"""The level families: one `Family` record each, looked up by `config.model.family`.

Everything the library knows of a family is in its record, so adding one touches one file: define the
record and `register` it (README, "Adding a level family"). The built-in families are registered in
sal_jax/built_in_families.py, imported at the first look-up: it imports the models and their training
work, which import modules that ask this registry.
"""
from __future__ import annotations

import dataclasses
import importlib
from typing import Any, Callable

import flax.linen as nn
import jax
import ml_collections
import numpy as np

from sal_jax.errors import ConfigError
from sal_jax.levels import Variables, num_params

# What a family's levels read: a check of the training inputs and its description. A wrong rank fails deep
# inside flax, or, for an MLP on (N,) inputs (flattened to one feature), trains silently on the wrong thing.
INPUT_KINDS = {"images": (lambda x: x.ndim == 4, "images of shape (N, H, W, C)"),
               "vectors": (lambda x: x.ndim >= 2, "inputs of shape (N, D) (or (N, ...), flattened per example)"),
               "tokens": (lambda x: x.ndim == 2 and np.issubdtype(x.dtype, np.integer),
                          "integer token ids of shape (N, L)")}
_BUILT_INS = "sal_jax.built_in_families"


def trained_params(variables: Variables) -> int:
    """A level's parameter count from its variables: its "params" (BatchNorm statistics are not parameters)."""
    return sum(int(np.size(leaf)) for leaf in jax.tree.leaves(variables.get("params", {})))


def _whole(phase: Any) -> list[Any]:
    return [phase]


def _no_inputs(*args: Any) -> dict[str, Any]:
    return {}


def _no_check(config: ml_collections.ConfigDict) -> None:
    return None


def _no_cache(module: nn.Module, variables: Variables, x: np.ndarray, batch_size: int) -> dict[str, np.ndarray]:
    return {}


@dataclasses.dataclass(frozen=True)
class Family:
    """One level family. Found by `config.model.family` for what the config decides (build, the dataset
    it loads, check, probe, phase work); by a level's class for what a level needs (the check of its
    inputs, complexity, batch cache), so a ladder of `module` levels gets them under any family name; by
    the collections of a level's variables for `param_count` (results hold variables only)."""

    name: str
    module: type[nn.Module]  # the class of its levels
    # (index, config.model, num_classes, vocab_size or None) -> level `index` (0 = top); a bad config.model
    # raises ConfigError naming the field
    build: Callable[[int, ml_collections.ConfigDict, int, int | None], nn.Module]
    inputs: str  # a key of INPUT_KINDS: what its levels read, checked against the dataset before training
    # (level, its saved "params") -> a sample input from which an abstract init gives the saved shapes
    # (sal_jax.checkpoint.load_level checks that a checkpoint holds this family's levels), or, when the
    # params lack what it reads, that difference as a phrase ("it has no parameters ...")
    probe: Callable[[nn.Module, Variables], jax.ShapeDtypeStruct | str]
    check: Callable[[ml_collections.ConfigDict], None] = _no_check  # checks of the config, before training
    complexity: Callable[[nn.Module, Any], float] = num_params  # (level, sample x): the ladder must grow in it
    # Variable collections beyond params and batch_stats that mark its levels' variables, which
    # `param_count` then counts (a frozen GLAI level's structure, a sparse level's masks).
    collections: tuple[str, ...] = ()
    param_count: Callable[[Variables], int] = trained_params
    # A phase of a ladder run -> the phases it is trained as (GLAI: a structure phase, then the rest).
    phase_parts: Callable[[Any], list[Any]] = _whole
    # (phase, levels, phases, done runs, config, epochs or None) -> extra train_level keyword arguments
    # for the phase: "hooks" (its epoch work, sal_jax.hooks), "start_from", "continue_from".
    phase_inputs: Callable[..., dict[str, Any]] = _no_inputs
    # (level, variables, x_train, batch_size) -> {name: (examples, ...) array}: read by the train step
    # from each batch instead of being computed every step (sal_jax.step.batch_collections)
    batch_cache: Callable[[nn.Module, Variables, np.ndarray, int], dict[str, np.ndarray]] = _no_cache
    # Why its seeds cannot train as members of one program (config.train.ensemble; sal_jax.member_loop), so
    # they train in turn; "" if they can.
    in_turn: str = ""


_REGISTRY: dict[str, Family] = {}


def _registry() -> dict[str, Family]:
    importlib.import_module(_BUILT_INS)  # registers the built-ins, in their order, before any other
    return _REGISTRY


def register(family: Family) -> None:
    """Adds `family` under its name, after those registered before it."""
    registry = _registry()
    if family.name in registry:
        raise ValueError(f"level family {family.name!r} is already registered")
    if family.inputs not in INPUT_KINDS:
        raise ValueError(f"level family {family.name!r}: inputs must be one of {list(INPUT_KINDS)}, "
                         f"got {family.inputs!r}")
    registry[family.name] = family


def unregister(name: str) -> None:
    """Removes family `name` (a test's own family, after the test)."""
    del _registry()[name]


def names(inputs: str | None = None) -> list[str]:
    """The registered families' names, in registration order; with `inputs`, those reading that kind."""
    return [name for name, family in _registry().items() if inputs in (None, family.inputs)]


def find(name: str) -> Family | None:
    """The family `name`, or None: a ladder of the user's own modules may name none."""
    return _registry().get(name)


def get(name: str) -> Family:
    """The family `name`; an unknown name fails with the registered ones."""
    family = find(name)
    if family is None:
        raise ConfigError(f"config.model.family: unknown family {name!r}; choose from {names()}")
    return family


def of_level(level: nn.Module) -> Family | None:
    """The family whose levels are of `level`'s class, or None (the user's own module)."""
    return next((family for family in _registry().values() if isinstance(level, family.module)), None)


def of_variables(variables: Variables) -> Family | None:
    """The family whose collections `variables` hold, or None."""
    return next((family for family in _registry().values()
                 if any(name in variables for name in family.collections)), None)


def batch_cache(module: nn.Module, variables: Variables, x: np.ndarray, batch_size: int) -> dict[str, np.ndarray]:
    """What the train step of `module` reads from each batch beside x and y (e.g. a frozen GLAI level's
    gates), computed once over `x`; {} for most levels."""
    family = of_level(module)
    return {} if family is None else family.batch_cache(module, variables, x, batch_size)
