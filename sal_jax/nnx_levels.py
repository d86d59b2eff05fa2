"""NNX levels: an `nnx.Module` as a level of the ladder, through the same functional step as a Linen level.

`from_nnx(model)` splits the model into its graphdef (static: the program) and its state (arrays: the
level's variables) and returns a Linen module that, when applied, merges them (`nnx.merge`), runs the model
and splits the updated state back out. The trainer sees an ordinary level: the model's `nnx.Param`s are
its "params" (trained; sharded, checkpointed and exported like any level's), every other variable (a
BatchNorm's `nnx.BatchStat`s, a Dropout's RNG stream) is in "batch_stats", the collection the training
step updates and evaluation and a frozen teacher leave alone. The initial state is the model's own, so a
model built with `nnx.Rngs(seed)` starts where NNX would put it; the ladder's per-level init key is not used.

Train and eval mode are NNX's: `nnx.view(model, deterministic=not train, use_running_average=not train)`,
so Dropout draws from its own RNG stream (its count is state, advanced and checkpointed) and BatchNorm
normalises with the batch while training and with its running averages otherwise.

Features: a model whose `__call__` returns `(logits, features)` needs nothing more; one that returns logits
names them, `from_nnx(model, features=("blocks/*",))`: paths of submodules as in the model's state
("blocks/3"), captured while the model runs by `nnx.capture` (method outputs), ordered as in
sal_jax.features.
"""
from __future__ import annotations

from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
from flax import nnx

from sal_jax.errors import ConfigError
from sal_jax.features import check_names, select_features

PARAMS, STATE = "params", "batch_stats"  # the Linen collections of a model's nnx.Params and of the rest


class _Held:
    """The model's graphdef and initial state, held by identity: arrays have no hash, and a level's
    identity (not its contents) is what keys its compiled programs."""

    def __init__(self, graphdef: Any, state: nnx.State, name: str):
        self.graphdef, self.state, self.name = graphdef, state, name
        self.abstract = jax.eval_shape(self.pure)

    def pure(self) -> dict[str, dict[str, Any]]:
        """The state as the level's variables: {"params": the nnx.Params, "batch_stats": all the rest}."""
        params, rest = nnx.split_state(self.state, nnx.Param, ...)
        return {PARAMS: _pure(params), STATE: _pure(rest)}


def _pure(state: nnx.State) -> dict[str, Any]:
    """A State as nested dicts of arrays with string keys (Orbax's), RNG keys as their raw data."""
    def value(variable):
        v = variable.get_value()
        return jax.random.key_data(v) if isinstance(variable, nnx.RngKey) else v

    def strings(tree):
        return {str(k): strings(v) for k, v in tree.items()} if isinstance(tree, dict) else tree
    return strings(nnx.to_pure_dict(state, extract_fn=value))


def _restore(template: nnx.State, pure: dict[str, Any]) -> nnx.State:
    """`template` with the values of `pure` (the inverse of `_pure`)."""
    def replace(variable, v):
        return variable.replace(jax.random.wrap_key_data(v) if isinstance(variable, nnx.RngKey) else v)

    # a new container of the same Variables: replace_by_pure_dict swaps in new ones, the template's stay
    state = jax.tree.map(lambda x: x, template, is_leaf=lambda x: isinstance(x, nnx.Variable))
    nnx.replace_by_pure_dict(state, pure, replace_fn=replace)
    return state


def _merge_dicts(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    out = dict(a)
    for k, v in b.items():
        out[k] = _merge_dicts(out[k], v) if k in out and isinstance(v, dict) else v
    return out


class NnxLevel(nn.Module):
    """A Linen level that runs an NNX model's graphdef on the state held in its variables (see module doc)."""

    held: _Held
    features: tuple[str, ...] = ()

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> tuple[jax.Array, tuple[jax.Array, ...]]:
        held = self.held
        # Initial values: copies of the model's arrays at init (the trainer donates a level's buffers to its
        # step; the model's own must outlive that: the next seed or baseline starts from them), and zeros
        # of their shapes otherwise (Linen evaluates an initialiser's shape to check a stored param).
        if self.is_initializing():
            start, make = jax.tree.map(jnp.copy, held.pure()), lambda v: v
        else:
            start, make = held.abstract, lambda a: jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), a)
        params = {k: self.param(k, lambda _, v=v: make(v)) for k, v in start[PARAMS].items()}
        rest = {k: self.variable(STATE, k, lambda v=v: make(v)) for k, v in start[STATE].items()}
        pure = _merge_dicts(params, {k: var.value for k, var in rest.items()})
        model = nnx.merge(held.graphdef, _restore(held.state, pure))
        model = nnx.view(model, deterministic=not train, use_running_average=not train, raise_if_not_found=False)
        if self.features:
            names = check_names(self.features, held.name)
            logits, captured = nnx.capture(model, nnx.Intermediate, method_outputs=nnx.Intermediate)(x)
            outputs = {"/".join(map(str, path[:-1])): variable.get_value()[0]
                       for path, variable in nnx.to_flat_state(captured)
                       if path[-1] == "__call__" and len(path) > 1}
            out = (logits, select_features(outputs, names, held.name, x.shape[0]))
        else:
            out = model(x)
        if self.is_mutable_collection(STATE):  # training: BatchNorm statistics and RNG counts move on
            _, _, new_rest = nnx.split(model, nnx.Param, ...)
            for k, v in _pure(new_rest).items():
                rest[k].value = v
        return out


def from_nnx(model: nnx.Module, features: Sequence[str] = ()) -> NnxLevel:
    """The NNX `model` as a level (see the module docstring); `features` names the feature submodules when
    the model returns logits only."""
    if not isinstance(model, nnx.Module):
        raise ConfigError(f"from_nnx: expected an nnx.Module, got {type(model).__name__}")
    graphdef, state = nnx.split(model)
    return NnxLevel(_Held(graphdef, state, type(model).__name__), tuple(features))
