"""GLAI training (sal_jax.models.glai): when to freeze the structure, the freeze itself, the gates cached
per training example, and the MLP width that matches a GLAI level's parameter count.

Choices the paper summary leaves open, made here:
- Structure convergence is watched on a fixed probe set (the first `config.glai.probe_size` training
  examples) at every epoch end: the *flip fraction* is the fraction of (example, unit) gates that changed
  since the previous epoch end (the first epoch compares with the initial weights); the *path distance*
  is, per example, the Jaccard distance between the sets of active input-to-output paths of the two
  patterns (a path is active when every unit on it is on), averaged over the probe set.
- The structure is frozen at the first epoch end whose flip fraction is at most
  `config.glai.flip_threshold`, and at the latest after `config.glai.max_structure_fraction` of the
  level's epochs, so that the value phase always has epochs left.
- At the freeze the values continue from the structure phase's weights (so the outputs are unchanged,
  bit for bit); the optimizer state starts afresh (as for a new round), the step count, epoch count,
  batch order and training clock continue. A level frozen in round 1 stays frozen in later rounds.
"""
from __future__ import annotations

import base64
import dataclasses
import math
from typing import TYPE_CHECKING, Any

import jax
import jax.numpy as jnp
import numpy as np

from sal_jax.hooks import Hook
from sal_jax.levels import Variables
from sal_jax.models.glai import GATES, STRUCTURE, GlaiMLP, structure_gates
from sal_jax.models.mlp import mlp_param_count, width_for_params

if TYPE_CHECKING:
    from sal_jax.level_loop import LevelLoop

Pattern = list[np.ndarray]  # one bool (examples, width) array per hidden layer


def is_frozen(variables: Variables) -> bool:
    return STRUCTURE in variables


def freeze(variables: Variables) -> Variables:
    """A structure-phase GLAI level's variables made value-phase: the hidden layers copied into the frozen
    "structure" collection, the params (the values) kept. The outputs stay the same, bit for bit."""
    params = variables["params"]
    structure = {name: jax.tree.map(jnp.copy, layer) for name, layer in params.items() if name.startswith("dense_")}
    return {"params": params, STRUCTURE: structure}


def activation_pattern(variables: Variables, x: Any, hidden_layers: int) -> Pattern:
    """The gates of inputs `x`: from the frozen structure if there is one, else from the params (an
    unfrozen level is an ordinary ReLU MLP). Computed on this process alone, from a host copy of the
    weights: they may be laid out over several processes' devices (sal_jax.parallel)."""
    source = host_copy(variables.get(STRUCTURE, variables["params"]))
    return [np.asarray(g) for g in _gates(source, np.asarray(x), hidden_layers)]


def host_copy(tree: Any) -> Any:
    """NumPy copies of a pytree's arrays, gathered from every process if they span several."""
    if all(not isinstance(leaf, jax.Array) or leaf.is_fully_addressable for leaf in jax.tree.leaves(tree)):
        return jax.device_get(tree)
    from jax.experimental import multihost_utils
    return multihost_utils.process_allgather(tree, tiled=True)


_gates = jax.jit(structure_gates, static_argnums=2)


def flip_fraction(before: Pattern, after: Pattern) -> float:
    """The fraction of (example, unit) gates that differ between two patterns of the same inputs."""
    flips = sum(int(np.sum(a != b)) for a, b in zip(before, after))
    return flips / sum(a.size for a in before)


def path_distance(before: Pattern, after: Pattern) -> float:
    """Mean over examples of the Jaccard distance between the active paths of two patterns.

    The paths active under a pattern are the product over layers of its units that are on (times the
    input and output dimensions, which cancel), so per example with n_l = |A_l|, m_l = |B_l| and
    c_l = |A_l ∩ B_l|: distance = 1 - Π c / (Π n + Π m - Π c), computed in logs (the products overflow
    for deep levels). Both patterns without any active path: 0; only one of them: 1."""
    on = lambda layers: np.stack([np.sum(layer, axis=-1) for layer in layers])  # (layers, examples)
    n, m, c = on(before), on(after), on([a & b for a, b in zip(before, after)])
    dead_n, dead_m, dead_c = (np.any(counts == 0, axis=0) for counts in (n, m, c))
    log = lambda counts: np.sum(np.log(np.maximum(counts, 1)), axis=0)
    with np.errstate(over="ignore"):
        shared = 1.0 / (np.exp(log(n) - log(c)) + np.exp(log(m) - log(c)) - 1.0)
    distance = np.where(dead_c, np.where(dead_n & dead_m, 0.0, 1.0), 1.0 - shared)
    return float(np.mean(distance))


def pack(pattern: Pattern) -> dict[str, Any]:
    """A pattern as JSON (for a checkpoint's progress record): base64 of its bits, and the shapes."""
    bits = np.packbits(np.concatenate([layer.reshape(-1) for layer in pattern]))
    return {"bits": base64.b64encode(bits.tobytes()).decode(), "shapes": [list(layer.shape) for layer in pattern]}


def unpack(packed: dict[str, Any]) -> Pattern:
    sizes = [int(np.prod(shape)) for shape in packed["shapes"]]
    bits = np.unpackbits(np.frombuffer(base64.b64decode(packed["bits"]), np.uint8))[: sum(sizes)].astype(bool)
    return [part.reshape(shape) for part, shape in zip(np.split(bits, np.cumsum(sizes)[:-1]), packed["shapes"])]


@dataclasses.dataclass
class StructureMonitor(Hook):
    """A GLAI level's structure phase, watched at every epoch end (a hook of the level loop, sal_jax.hooks):
    adds "structure_flips" and "path_distance" to the epoch's history row and ends the phase when the
    structure is stable or after `max_epochs`. What it keeps between epochs (the last pattern, packed) is
    the level's Progress.monitor, so it is checkpointed and a resumed run decides exactly as an
    uninterrupted one."""

    hidden_layers: int
    probe_size: int        # the probe set: the first probe_size training inputs
    flip_threshold: float  # freeze at the first epoch end with at most this flip fraction
    max_epochs: int        # ... and at the latest after this many epochs

    def _pattern(self, loop: LevelLoop) -> Pattern:
        return activation_pattern({"params": loop.state.params["model"]}, loop.data.x_train[:self.probe_size],
                                  self.hidden_layers)

    def start(self, loop: LevelLoop) -> None:
        if loop.progress.monitor is None:  # a resumed phase continues its record
            loop.progress.monitor = {"pattern": pack(self._pattern(loop)), "stop": False}

    def measure(self, loop: LevelLoop, row: dict[str, float]) -> None:
        before, after = unpack(loop.progress.monitor["pattern"]), self._pattern(loop)
        row["structure_flips"] = flip_fraction(before, after)
        row["path_distance"] = path_distance(before, after)
        stable = row["structure_flips"] <= self.flip_threshold
        loop.progress.monitor = {"pattern": pack(after), "stop": bool(stable or row["epoch"] >= self.max_epochs)}

    def stop(self, loop: LevelLoop) -> bool:
        return loop.progress.monitor["stop"]


def gate_cache(module: Any, variables: Variables, x: np.ndarray, batch_size: int) -> dict[str, np.ndarray]:
    """{"gates/dense_i": bool (examples, width)}: the gates of every input of `x` under a frozen GLAI
    level's structure, computed once (in batches), for the train step to read instead of running the
    structure (sal_jax.step.batch_collections); {} for any other level or an unfrozen one."""
    if not (isinstance(module, GlaiMLP) and is_frozen(variables)):
        return {}
    parts = [activation_pattern(variables, x[i:i + batch_size], module.hidden_layers)
             for i in range(0, len(x), batch_size)]
    return {f"{GATES}/dense_{j}": np.concatenate([p[j] for p in parts]) for j in range(module.hidden_layers)}


def glai_param_count(in_dim: int, width: int, hidden_layers: int, num_classes: int) -> int:
    """Parameters of a frozen GLAI level: its values plus its structure (the hidden layers, no head)."""
    values = mlp_param_count(in_dim, width, hidden_layers, num_classes)
    return values + (in_dim + 1) * width + (hidden_layers - 1) * (width + 1) * width


def matched_mlp_width(in_dim: int, glai_width: int, hidden_layers: int, num_classes: int) -> int:
    """The MLP width whose parameter count is closest to a frozen GLAI level's of width `glai_width` (same
    depth): the equal-parameter baseline. glai_width / this is the paper's width reduction factor."""
    return width_for_params(glai_param_count(in_dim, glai_width, hidden_layers, num_classes), in_dim,
                            hidden_layers, num_classes)


def _path_flows(params: Variables, hidden_layers: int) -> tuple[list[np.ndarray], list[np.ndarray], list[np.ndarray]]:
    """(squared kernels W_l^2 of every layer, head included; into; out): into[l] = 1' W_0^2 ... W_{l-1}^2,
    the summed squared-weight products of all paths from the inputs into layer l's inputs (into[0] = 1),
    and out[l] = W_{l+1}^2 ... W_head^2 1, from layer l's outputs to the outputs (out[-1] = 1)."""
    names = [f"dense_{i}" for i in range(hidden_layers)] + ["head"]
    squares = [np.asarray(params[name]["kernel"], np.float64) ** 2 for name in names]
    into = [np.ones(squares[0].shape[0])]
    for square in squares[:-1]:
        into.append(into[-1] @ square)
    out = [np.ones(squares[-1].shape[1])]
    for square in reversed(squares[1:]):
        out.insert(0, square @ out[0])
    return squares, into, out


def unit_path_norms(params: Variables, hidden_layers: int) -> list[np.ndarray]:
    """The l2 path norm through each hidden unit of the values: the square root of the sum, over the
    input-to-output paths through the unit, of the product of their squared weights (biases left out):
    sqrt(into * out) at the unit. One array of `width` norms per hidden layer."""
    _, into, out = _path_flows(params, hidden_layers)
    return [np.sqrt(into[l + 1] * out[l]) for l in range(hidden_layers)]


def weight_path_norms(params: Variables, hidden_layers: int) -> list[np.ndarray]:
    """The l2 path norm through each weight of the values (every layer's kernel, the head's too): the
    square root of the sum over the paths through that edge of their squared-weight products,
    sqrt(into_i * w_ij^2 * out_j)."""
    squares, into, out = _path_flows(params, hidden_layers)
    return [np.sqrt(into[l][:, None] * square * out[l][None, :]) for l, square in enumerate(squares)]


def prune_weights(variables: Variables, hidden_layers: int, keep: float) -> Variables:
    """A frozen GLAI level with only the fraction `keep` of each layer's value weights left (those of
    largest path norm; biases kept), the others zeroed. As for prune_units the structure stays whole, so
    every path whose edges are all kept contributes exactly as before."""
    if not is_frozen(variables):
        raise ValueError("prune_weights: prune a frozen GLAI level (sal_jax.glai.freeze)")
    if not 0 < keep <= 1:
        raise ValueError(f"prune_weights: keep must be a fraction in (0, 1], got {keep}")
    params = jax.tree.map(np.array, variables["params"])
    names = [f"dense_{i}" for i in range(hidden_layers)] + ["head"]
    for name, norms in zip(names, weight_path_norms(params, hidden_layers)):
        k = max(1, math.floor(keep * norms.size))
        removed = np.argsort(-norms, axis=None, kind="stable")[k:]
        params[name]["kernel"].reshape(-1)[removed] = 0
    return {**variables, "params": jax.tree.map(jnp.asarray, params)}


def prune_units(variables: Variables, hidden_layers: int, keep: list[int]) -> Variables:
    """A frozen GLAI level with only the keep[l] units of largest path norm left in hidden layer l of its
    values: the others' incoming weights, bias and outgoing weights are zeroed, so every path through them
    contributes nothing. The structure is left whole: the gates, and so the contribution of every path
    through kept units, are exactly as before."""
    if not is_frozen(variables):
        raise ValueError("prune_units: prune a frozen GLAI level (sal_jax.glai.freeze): pruning an unfrozen "
                         "one would change the gates of the units it keeps")
    params = jax.tree.map(np.array, variables["params"])
    for i, (norms, k) in enumerate(zip(unit_path_norms(params, hidden_layers), keep)):
        if not 0 < k <= len(norms):
            raise ValueError(f"prune_units: keep[{i}] must be in 1..{len(norms)}, got {k}")
        removed = np.argsort(-norms, kind="stable")[k:]
        layer, following = params[f"dense_{i}"], params[f"dense_{i + 1}" if i + 1 < hidden_layers else "head"]
        layer["kernel"][:, removed] = 0
        layer["bias"][removed] = 0
        following["kernel"][removed, :] = 0
    return {**variables, "params": jax.tree.map(jnp.asarray, params)}


def pruned_param_count(in_dim: int, keep: list[int], width: int, num_classes: int) -> int:
    """Parameters of a pruned frozen GLAI level: the kept values plus the whole structure."""
    widths = [in_dim, *keep, num_classes]
    values = sum((a + 1) * b for a, b in zip(widths[:-1], widths[1:]))
    structure = glai_param_count(in_dim, width, len(keep), num_classes) - mlp_param_count(in_dim, width, len(keep),
                                                                                           num_classes)
    return values + structure
