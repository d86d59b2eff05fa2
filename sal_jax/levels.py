"""The level contract: how the trainer calls any level, built-in or the user's own.

A level is a Flax module whose `__call__(x[, train])` returns `(logits, features)`; `features` is an
ordered tuple of hidden activations with the batch first. If `__call__` takes `train`, it is passed
(True while the level trains, False for evaluation and for a frozen teacher).

Models that return logits only, and NNX models, become levels through sal_jax.features.FeaturesByName and
sal_jax.nnx_levels.from_nnx (Linen modules that follow this contract).
"""
from __future__ import annotations

import inspect
from typing import Any

import flax.linen as nn
import jax

from sal_jax.errors import ConfigError

Variables = dict[str, Any]


def takes_train_flag(module: nn.Module) -> bool:
    return "train" in inspect.signature(type(module).__call__).parameters


def apply_level(module: nn.Module, variables: Variables, x: jax.Array, train: bool
                ) -> tuple[tuple[jax.Array, tuple[jax.Array, ...]], Variables]:
    """Forward pass -> ((logits, features), updated batch_stats or {}).

    BatchNorm statistics are updated only when `train` is True and the level has them; a frozen teacher
    is always applied with train=False, so its statistics never move.
    """
    kwargs = {"train": train} if takes_train_flag(module) else {}
    if train and "batch_stats" in variables:
        out, updates = module.apply(variables, x, mutable=["batch_stats"], **kwargs)
        return out, updates["batch_stats"]
    return module.apply(variables, x, **kwargs), variables.get("batch_stats", {})


def _init_with_output(module: nn.Module, key: jax.Array, x: jax.Array):
    kwargs = {"train": False} if takes_train_flag(module) else {}
    return module.init_with_output(key, x, **kwargs)


def init_level(module: nn.Module, key: jax.Array, x: jax.Array) -> Variables:
    """Initial variables from one example batch, checking the (logits, features) contract."""
    out, variables = _init_with_output(module, key, x)
    check_contract(module, out)
    return dict(variables)


def abstract_level(module: nn.Module, x: jax.Array) -> tuple[Any, Variables]:
    """Shapes of ((logits, features), variables) from an abstract forward: no memory, no FLOPs."""
    out, variables = jax.eval_shape(lambda x: _init_with_output(module, jax.random.key(0), x), x)
    check_contract(module, out)
    return out, variables


def check_contract(module: nn.Module, out: Any) -> None:
    name = type(module).__name__
    if not (isinstance(out, tuple) and len(out) == 2 and isinstance(out[1], (tuple, list))):
        raise ConfigError(f"level {name}: __call__ must return (logits, features) with features a tuple "
                          f"of hidden activations, got {type(out).__name__}")
    if len(out[1]) == 0:
        raise ConfigError(f"level {name}: returns no hidden features; SAL guidance needs at least one")


def num_params(module: nn.Module, x: jax.Array) -> int:
    _, variables = abstract_level(module, x)
    return sum(int(leaf.size) for leaf in jax.tree.leaves(variables.get("params", {})))


def predict(module: nn.Module, variables: Variables, x: jax.Array) -> jax.Array:
    """Logits of a trained level in inference mode (BatchNorm uses its running statistics)."""
    (logits, _), _ = apply_level(module, variables, x, train=False)
    return logits


def host_device() -> jax.Device | None:
    """This process's first CPU device, where levels are initialised; None if the CPU backend is off
    (JAX_PLATFORMS without cpu)."""
    try:
        return jax.local_devices(backend="cpu")[0]
    except RuntimeError:
        return None
