"""Sparse evolutionary training (SET) and neuron pruning (NPSET) of sal_jax.models.sparse levels, between
epochs, as pure jitted functions of (params, masks, optimizer state, key).

Choices the paper summary leaves open, made here:
- Evolution (after every epoch but the last, when `config.sparse.zeta` > 0): in every layer whose
  density is below 1, the fraction ζ of its active weights of smallest magnitude are removed (set to 0,
  masked) and as many connections are grown at positions drawn uniformly among the layer's inactive ones
  (the just-removed included) whose two units are alive. Grown weights start at 0; the optimizer's state
  (e.g. Adam's moments) is reset to 0 at every removed and grown position, so a removed weight stays
  exactly 0 and a grown one starts afresh. Each layer's connection count is unchanged by evolution.
  Its randomness is a function of (seed, level, round, epoch): nothing to keep between epochs.
- Neuron pruning (`config.sparse.prune_fraction` > 0): a hidden unit's importance is the sum of the
  magnitudes of its live incoming weights; at the end of each of the first `prune_until` of the epochs
  the least important alive units of each hidden layer are pruned (their unit mask, incoming column and
  outgoing row set to 0, their optimizer state reset), so that the alive fraction falls linearly to
  1 - prune_fraction. A pruned unit's connections are not regrown: the parameter count falls with the
  neuron count. Pruning happens before evolution in the same epoch end.
"""
from __future__ import annotations

import dataclasses
import functools
import json
from typing import TYPE_CHECKING, Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from sal_jax.hooks import Hook
from sal_jax.levels import Variables
from sal_jax.models.sparse import MASKS, erdos_renyi_density
from sal_jax.optimizers import make_optimizer

if TYPE_CHECKING:
    from sal_jax.level_loop import LevelLoop

Tree = Any


def smallest(x: jax.Array, k: jax.Array) -> jax.Array:
    """A mask, in x's shape, of its k smallest elements (0 <= k <= x.size, traced), ties going to the first
    by position: those a stable ascending sort puts first.

    By lax.top_k (XLA's TopK gives ties to the lower index too) rather than a full sort: at ζ 0.3 and ε 20
    a 1024 x 1024 kernel's k is about 1% of its size, and selecting that few is about 10x faster than
    sorting it all (between_epochs at 2 x 1024 on a CPU, benchmarks/bench_sparse.py). top_k's count is
    static, so it is the smallest of a few candidates (x.size / 8^j) that holds k, chosen at run time."""
    flat = -x.reshape(-1)  # top_k takes the largest
    sizes = sorted({max(1, flat.size >> shift) for shift in range(0, 12, 3)})

    def first(size: int):
        return lambda: jnp.zeros(flat.shape, bool).at[jax.lax.top_k(flat, size)[1]].set(jnp.arange(size) < k)
    return jax.lax.switch(jnp.searchsorted(jnp.array(sizes), k), [first(s) for s in sizes]).reshape(x.shape)


def layer_names(params: Tree) -> list[str]:
    """The masked layers in order: dense_0, dense_1, ..., head."""
    hidden = sorted((k for k in params if k.startswith("dense_")), key=lambda k: int(k.split("_")[1]))
    return hidden + ["head"]


def unit_masks(masks: Tree, names: list[str]) -> list[jax.Array]:
    """The alive mask of every layer's inputs (the data's are all alive) and of the head's outputs."""
    first = jnp.ones(masks[names[0]]["kernel"].shape[0], jnp.float32)
    hidden = [masks[name]["units"] for name in names[:-1]]
    return [first, *hidden, jnp.ones(masks[names[-1]]["kernel"].shape[1], jnp.float32)]


def evolve_layer(kernel: jax.Array, mask: jax.Array, rows: jax.Array, cols: jax.Array, key: jax.Array,
                 zeta: float) -> tuple[jax.Array, jax.Array, jax.Array]:
    """One layer's SET step -> (kernel, mask, changed): the fraction zeta of its active weights of smallest
    magnitude removed, as many grown at random allowed positions (both units alive), at 0."""
    active = mask > 0
    k = jnp.floor(zeta * jnp.sum(active)).astype(jnp.int32)
    removed = active & smallest(jnp.where(active, jnp.abs(kernel), jnp.inf), k)
    allowed = ~(active & ~removed) & (rows[:, None] > 0) & (cols[None, :] > 0)
    grown = allowed & smallest(jnp.where(allowed, jax.random.uniform(key, kernel.shape), jnp.inf), k)
    new_mask = ((active & ~removed) | grown).astype(mask.dtype)
    return jnp.where(removed | grown, 0.0, kernel), new_mask, removed | grown


def prune_units(params: Tree, masks: Tree, alive_target: jax.Array) -> tuple[Tree, Tree, Tree]:
    """Neuron pruning -> (params, masks, changed kernels): in each hidden layer, the alive units of least
    importance (sum of |live incoming weights|) pruned until at most alive_target[l] are alive."""
    names = layer_names(params)
    params, masks = jax.tree.map(lambda a: a, params), jax.tree.map(lambda a: a, masks)
    changed = {name: {"kernel": jnp.zeros_like(masks[name]["kernel"], bool)} for name in names}
    for i, name in enumerate(names[:-1]):
        units = masks[name]["units"]
        importance = jnp.sum(jnp.abs(params[name]["kernel"]) * masks[name]["kernel"], axis=0)
        n_remove = jnp.maximum(jnp.sum(units > 0) - alive_target[i], 0)
        pruned = (units > 0) & smallest(jnp.where(units > 0, importance, jnp.inf), n_remove)
        keep = (~pruned).astype(jnp.float32)
        following = names[i + 1]
        masks[name] = {**masks[name], "units": units * keep, "kernel": masks[name]["kernel"] * keep[None, :]}
        masks[following] = {**masks[following], "kernel": masks[following]["kernel"] * keep[:, None]}
        params[name] = {"kernel": params[name]["kernel"] * keep[None, :], "bias": params[name]["bias"] * keep}
        params[following] = {**params[following], "kernel": params[following]["kernel"] * keep[:, None]}
        changed[name]["kernel"] = changed[name]["kernel"] | pruned[None, :]
        changed[following]["kernel"] = changed[following]["kernel"] | pruned[:, None]
    return params, masks, changed


def reset_optimizer_state(tx: optax.GradientTransformation, opt_state: Tree, params: Tree, changed: Tree) -> Tree:
    """The optimizer state with every entry that mirrors a changed kernel position set to 0."""
    keep = {"model": {name: {k: (~changed[name]["kernel"]).astype(v.dtype) if k == "kernel" and name in changed
                             else jnp.ones_like(v) for k, v in layer.items()}
                      for name, layer in params["model"].items()},
            "projections": jax.tree.map(jnp.ones_like, params["projections"])}
    return optax.tree_map_params(tx, lambda leaf, k: leaf * k, opt_state, keep)


def between_epochs(tx: optax.GradientTransformation, evolving: tuple[str, ...], zeta: float, params: Tree,
                   constants: Tree, opt_state: Tree, key: jax.Array, alive_target: jax.Array
                   ) -> tuple[Tree, Tree, Tree]:
    """Neuron pruning, then evolution of the layers named in `evolving` -> (params, constants, opt_state).
    `params` and `constants` as in TrainState; zeta 0: no evolution; alive_target: per hidden layer, the
    most units that may stay alive (its width: no pruning)."""
    model, masks, changed = prune_units(params["model"], constants[MASKS], alive_target)
    names = layer_names(model)
    alive = unit_masks(masks, names)
    for i, (name, layer_key) in enumerate(zip(names, jax.random.split(key, len(names)))):
        if zeta > 0 and name in evolving:
            kernel, mask, moved = evolve_layer(model[name]["kernel"], masks[name]["kernel"], alive[i], alive[i + 1],
                                               layer_key, zeta)
            model[name] = {**model[name], "kernel": kernel}
            masks[name] = {**masks[name], "kernel": mask}
            changed[name]["kernel"] = changed[name]["kernel"] | moved
    params = {**params, "model": model}
    return params, {**constants, MASKS: masks}, reset_optimizer_state(tx, opt_state, params, changed)


def evolving_layers(params: Tree, epsilon: float) -> tuple[str, ...]:
    """The layers SET evolves: those initialised below full density (a full layer stays full)."""
    return tuple(name for name in layer_names(params)
                 if erdos_renyi_density(*params[name]["kernel"].shape, epsilon) < 1)


def alive_target(width: int, prune_fraction: float, prune_epochs: int, epoch: int) -> int:
    """How many units of a hidden layer may be alive after `epoch` epochs: falling linearly to
    width * (1 - prune_fraction) over the first prune_epochs epochs."""
    if prune_fraction <= 0 or prune_epochs <= 0:
        return width
    return width - round(prune_fraction * width * min(epoch, prune_epochs) / prune_epochs)


def live_param_count(variables: Variables) -> int:
    """Parameters a sparse level uses: its live weights, and the biases of its alive units and head."""
    params, masks = variables["params"], variables[MASKS]
    count = 0
    for name in layer_names(params):
        count += int(np.sum(np.asarray(masks[name]["kernel"])))
        units = masks[name].get("units")
        count += int(np.sum(np.asarray(units))) if units is not None else int(np.size(params[name]["bias"]))
    return count


@dataclasses.dataclass
class SparseEvolution(Hook):
    """A sparse level's epoch work (a hook of the level loop, sal_jax.hooks): records each epoch's live
    connections and alive hidden units in its history row, and between epochs prunes neurons and evolves
    the connections (`between_epochs`, compiled by `start`, before the training clock runs). Keys:
    fold_in(key, epoch), so nothing is kept between epochs and a resumed run evolves exactly as an
    uninterrupted one."""

    optimizer: str  # config.train as JSON: the optimizer whose state mirrors the params
    epsilon: float
    zeta: float
    prune_fraction: float
    prune_epochs: int
    width: int
    key: jax.Array

    def start(self, loop: LevelLoop) -> None:
        state = loop.state
        self._compiled = self._step(state).lower(*self._arguments(state, 0)).compile()  # off the training clock

    def _step(self, state: Any):
        return _between_epochs(self.optimizer, evolving_layers(state.params["model"], self.epsilon), self.zeta)

    def _arguments(self, state: Any, epoch: int) -> tuple:
        hidden = len(layer_names(state.params["model"])) - 1
        target = jnp.full((hidden,), alive_target(self.width, self.prune_fraction, self.prune_epochs, epoch), jnp.int32)
        return state.params, state.constants, state.opt_state, jax.random.fold_in(self.key, epoch), target

    def measure(self, loop: LevelLoop, row: dict[str, float]) -> None:
        masks = jax.device_get(loop.state.constants[MASKS])
        row["connections"] = float(sum(np.sum(layer["kernel"]) for layer in masks.values()))
        row["alive_units"] = float(sum(np.sum(layer["units"]) for layer in masks.values() if "units" in layer))

    def between_epochs(self, loop: LevelLoop) -> Any:
        state = loop.state
        params, constants, opt_state = self._compiled(*self._arguments(state, loop.progress.epoch))
        return state.replace(params=params, constants=constants, opt_state=opt_state)


@functools.lru_cache(maxsize=64)
def _between_epochs(optimizer: str, evolving: tuple[str, ...], zeta: float):
    """between_epochs jitted for one (optimizer settings, evolving layers, zeta): compiled once per level
    shape, not once per phase."""
    tx = make_optimizer(ml_collections.ConfigDict(json.loads(optimizer)))
    return jax.jit(functools.partial(between_epochs, tx, evolving, zeta))


def expected_live_params(in_dim: int, width: int, hidden_layers: int, num_classes: int, epsilon: float,
                         prune_fraction: float) -> float:
    """The expected parameter count of a trained sparse level (before training: for sizing the dense
    baseline of equal parameters): each layer's Erdős–Rényi connections, of which those touching pruned
    units are gone, plus the alive units' and the head's biases. A trained level has somewhat more (17%
    in tests/test_sparse.py): the pruned units, the least important, tend to be the least connected."""
    alive = 1.0 - prune_fraction
    sizes = [in_dim, *[width] * hidden_layers, num_classes]
    kept = [1.0, *[alive] * hidden_layers, 1.0]
    weights = sum(erdos_renyi_density(a, b, epsilon) * a * b * ka * kb
                  for a, b, ka, kb in zip(sizes[:-1], sizes[1:], kept[:-1], kept[1:]))
    return weights + hidden_layers * width * alive + num_classes
