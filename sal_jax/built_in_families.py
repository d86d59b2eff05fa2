"""The built-in level families (sal_jax.families), registered in the order `config.model.family` lists them."""
from __future__ import annotations

import dataclasses
import json
import math
from typing import Any, Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from sal_jax import glai, sparse
from sal_jax.config import check_positive
from sal_jax.errors import ConfigError, is_integer, is_number
from sal_jax.families import Family, register
from sal_jax.ladder import BASELINE_KINDS, Phase
from sal_jax.level_loop import run_key
from sal_jax.levels import Variables
from sal_jax.models.cnn import CNN
from sal_jax.models.glai import STRUCTURE, GlaiMLP
from sal_jax.models.mlp import ACTIVATIONS, MLP
from sal_jax.models.rnn import CELLS, RNN
from sal_jax.models.sparse import MASKS, SparseMLP
from sal_jax.models.transformer import TextTransformer, ViT, check_settings
from sal_jax.records import LevelRun

Model = ml_collections.ConfigDict


def _check_activation(model: Model) -> None:
    if model.activation not in ACTIVATIONS:
        raise ConfigError(f"config.model.activation: unknown {model.activation!r}; choose from {sorted(ACTIVATIONS)}")


def _needs_text(family: str, vocab_size: int | None) -> None:
    if vocab_size is None:
        raise ConfigError(f"config.model.family: {family!r} needs a text dataset (token ids and a vocabulary)")


def _first_layer(name: str, shape: Callable[[Any], tuple[int, ...]]
                 ) -> Callable[[nn.Module, Variables], jax.ShapeDtypeStruct | str]:
    """A probe for levels whose parameter shapes depend on the input only through the first layer's
    input width, read from its saved kernel (image size changes no parameter)."""
    def probe(module: nn.Module, params: Variables) -> jax.ShapeDtypeStruct | str:
        layer = params.get(name)
        kernel = layer.get("kernel") if isinstance(layer, dict) else None
        if kernel is None or len(kernel.shape) < 2:
            return f"it has no parameters {name}/kernel"
        return jax.ShapeDtypeStruct(shape(kernel), jnp.float32)
    return probe


_DENSE_PROBE = _first_layer("dense_0", lambda k: (1, k.shape[0]))


# The transformers' position tables depend on the input: one row per token (text), (rows, cols) of
# patches (vit; patch_embed's kernel is (patch * patch * channels, dim)).
def _text_transformer_probe(module: nn.Module, params: Variables) -> jax.ShapeDtypeStruct | str:
    position = getattr(params.get("position"), "shape", ())
    if len(position) != 2:
        return "it has no parameters position (tokens, dim)"
    return jax.ShapeDtypeStruct((1, position[0]), jnp.int32)  # token ids


def _vit_probe(module: nn.Module, params: Variables) -> jax.ShapeDtypeStruct | str:
    position = getattr(params.get("position"), "shape", ())
    kernel = getattr(params.get("patch_embed", {}).get("kernel"), "shape", ())
    if len(position) != 3 or len(kernel) != 2:
        return "it has no parameters position (rows, cols, dim) and patch_embed/kernel"
    p = module.patch
    return jax.ShapeDtypeStruct((1, position[0] * p, position[1] * p, kernel[0] // (p * p)), jnp.float32)


def _rnn_probe(module: nn.Module, params: Variables) -> jax.ShapeDtypeStruct:
    return jax.ShapeDtypeStruct((1, 4), jnp.int32)  # token ids; sequence length changes no parameter


def _mlp(index: int, model: Model, num_classes: int, vocab_size: int | None) -> nn.Module:
    depth = model.levels[index]
    _check_activation(model)
    return MLP(depth, model.width, num_classes, model.activation)


def _cnn(index: int, model: Model, num_classes: int, vocab_size: int | None) -> nn.Module:
    depth = model.levels[index]
    if depth > len(model.channels):
        raise ConfigError(f"config.model.levels: level {index + 1} asks for {depth} blocks but "
                          f"config.model.channels lists only {len(model.channels)}")
    return CNN(tuple(model.channels[:depth]), num_classes, model.batch_norm)


def _rnn(index: int, model: Model, num_classes: int, vocab_size: int | None) -> nn.Module:
    depth = model.levels[index]
    if model.cell not in CELLS:
        raise ConfigError(f"config.model.cell: unknown {model.cell!r}; choose from {sorted(CELLS)}")
    _needs_text("rnn", vocab_size)
    return RNN(depth, model.hidden, vocab_size, num_classes, model.embed_dim, model.cell)


def _glai(index: int, model: Model, num_classes: int, vocab_size: int | None) -> nn.Module:
    # ReLU by definition: its structure is the ReLUs' on/off pattern
    return GlaiMLP(model.levels[index], model.width, num_classes)


def _sparse(index: int, model: Model, num_classes: int, vocab_size: int | None) -> nn.Module:
    depth = model.levels[index]
    _check_activation(model)
    epsilon = model.epsilon
    if model.epsilons:
        if len(model.epsilons) != len(model.levels):
            raise ConfigError(f"config.model.epsilons: needs one value per level ({len(model.levels)}), "
                              f"got {len(model.epsilons)}")
        epsilon = model.epsilons[index]
    return SparseMLP(depth, model.width, num_classes, model.activation, float(epsilon))


def _encoder_settings(model: Model) -> dict[str, Any]:
    """The settings both transformer families share; depth = encoder blocks, all of width model.dim."""
    check_settings(model.dim, model.heads, model.mlp_ratio, model.norm, model.pooling)
    return dict(dim=model.dim, heads=model.heads, mlp_ratio=model.mlp_ratio, norm=model.norm, pooling=model.pooling)


def _transformer(index: int, model: Model, num_classes: int, vocab_size: int | None) -> nn.Module:
    depth, shared = model.levels[index], _encoder_settings(model)
    _needs_text("transformer", vocab_size)
    return TextTransformer(depth, vocab_size, num_classes, **shared)


def _vit(index: int, model: Model, num_classes: int, vocab_size: int | None) -> nn.Module:
    depth, shared = model.levels[index], _encoder_settings(model)
    if not is_integer(model.patch) or model.patch <= 0:
        raise ConfigError(f"config.model.patch: must be a positive integer, got {model.patch!r}")
    return ViT(depth, num_classes, patch=model.patch, **shared)


def check_glai(config: ml_collections.ConfigDict) -> None:
    """config.glai: when a GLAI level freezes its structure (sal_jax.glai)."""
    spec = config.glai
    check_positive(spec.probe_size, "glai.probe_size")
    if not is_number(spec.flip_threshold) or not 0 <= spec.flip_threshold <= 1:
        raise ConfigError(f"config.glai.flip_threshold: must be a fraction in [0, 1], got {spec.flip_threshold!r}")
    if not is_number(spec.max_structure_fraction) or not 0 < spec.max_structure_fraction < 1:
        raise ConfigError(f"config.glai.max_structure_fraction: must be in (0, 1) (the value phase needs epochs), "
                          f"got {spec.max_structure_fraction!r}")


def check_sparse(config: ml_collections.ConfigDict) -> None:
    """config.sparse and config.model.epsilon(s): a sparse level's density, evolution and neuron pruning."""
    check_positive(config.model.epsilon, "model.epsilon", integer=False)
    for value in config.model.epsilons:  # one per level: checked by the family's build
        check_positive(value, "model.epsilons", integer=False)
    for key, low, high in (("zeta", 0, 1), ("prune_fraction", 0, 1)):
        value = config.sparse[key]
        if not is_number(value) or not low <= value < high:
            raise ConfigError(f"config.sparse.{key}: must be in [{low}, {high}), got {value!r}")
    until = config.sparse.prune_until
    if not is_number(until) or not 0 < until <= 1:
        raise ConfigError(f"config.sparse.prune_until: must be a fraction of the epochs in (0, 1], got {until!r}")


def glai_phase_parts(phase: Phase) -> list[Phase]:
    """A GLAI level's first training (round 1, and each baseline) is two phases: its structure phase,
    then the rest."""
    if phase.round > 1:
        return [phase]
    return [dataclasses.replace(phase, name=f"{phase.name} structure", part="structure"), phase]


def glai_phase_inputs(phase: Phase, levels: Sequence[nn.Module], phases: Sequence[Phase], done: Sequence[LevelRun],
                      config: ml_collections.ConfigDict, epochs: int | None) -> dict[str, Any]:
    """A GLAI level's phase (sal_jax.glai): the structure phase is watched by a StructureMonitor and ends at
    the latest after config.glai.max_structure_fraction of the epochs; the phase after it starts from its
    frozen variables and continues its epochs, steps, history and clock."""
    index = len(done)
    if phase.part == "structure":
        epochs = config.train.epochs if epochs is None else epochs
        return {"hooks": [glai.StructureMonitor(
            levels[phase.level - 1].hidden_layers, config.glai.probe_size, config.glai.flip_threshold,
            max_epochs=max(1, math.floor(config.glai.max_structure_fraction * epochs)))]}
    if index > 0 and phases[index - 1].part == "structure":
        structure_run = done[index - 1]
        return {"start_from": glai.freeze(structure_run.variables), "continue_from": structure_run}
    return {}


def sparse_phase_inputs(phase: Phase, levels: Sequence[nn.Module], phases: Sequence[Phase], done: Sequence[LevelRun],
                        config: ml_collections.ConfigDict, epochs: int | None) -> dict[str, Any]:
    """A sparse level's phase (sal_jax.sparse): evolved and pruned between epochs, with keys of its own
    (seed, level, round, kind)."""
    spec, epochs = config.sparse, config.train.epochs if epochs is None else epochs
    key = run_key(config.seed, phase.level, phase.round)
    return {"hooks": [sparse.SparseEvolution(
        json.dumps(config.train.to_dict(), sort_keys=True), levels[phase.level - 1].epsilon, spec.zeta, spec.prune_fraction,
        max(1, math.floor(spec.prune_until * epochs)), levels[phase.level - 1].width,
        jax.random.fold_in(key, list(BASELINE_KINDS).index(phase.kind) + 1 if phase.kind in BASELINE_KINDS else 0))]}


def sparse_complexity(level: nn.Module, sample_x: Any) -> float:
    """A sparse level's expected live parameter count (its masks are drawn at init), so a ladder may grow
    in density."""
    return sparse.expected_live_params(int(math.prod(sample_x.shape[1:])), level.width, level.hidden_layers,
                                       level.num_classes, level.epsilon, 0.0)


def glai_param_count(variables: Variables) -> int:
    """A frozen GLAI level's parameters: its values and its structure (weights it needs for its outputs)."""
    return sum(int(np.size(leaf)) for leaf in jax.tree.leaves([variables.get("params", {}), variables[STRUCTURE]]))


for _family in (
        Family("mlp", MLP, _mlp, "vectors", _DENSE_PROBE),
        Family("cnn", CNN, _cnn, "images", _first_layer("conv_0", lambda k: (1, 4, 4, k.shape[2]))),
        Family("rnn", RNN, _rnn, "tokens", _rnn_probe),
        Family("glai", GlaiMLP, _glai, "vectors", _DENSE_PROBE, check=check_glai, collections=(STRUCTURE,),
               param_count=glai_param_count, phase_parts=glai_phase_parts, phase_inputs=glai_phase_inputs,
               batch_cache=glai.gate_cache,
               in_turn="a GLAI level's structure freezes at an epoch of its own, and its gates are cached per level"),
        Family("set_mlp", SparseMLP, _sparse, "vectors", _DENSE_PROBE, check=check_sparse,
               complexity=sparse_complexity, collections=(MASKS,), param_count=sparse.live_param_count,
               phase_inputs=sparse_phase_inputs, in_turn="a sparse level's topology evolves on its own between epochs"),
        Family("transformer", TextTransformer, _transformer, "tokens", _text_transformer_probe),
        Family("vit", ViT, _vit, "images", _vit_probe)):
    register(_family)
