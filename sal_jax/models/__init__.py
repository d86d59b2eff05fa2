"""Built-in level families. `make_level` is the one place a config becomes a Flax module.

A level is any Flax module whose `__call__(x, train=False)` returns `(logits, features)`, features being
an ordered tuple of hidden activations (batch first). User modules that follow this contract plug into
the trainer unchanged.
"""
from __future__ import annotations

import ml_collections
import flax.linen as nn

from sal_jax.errors import ConfigError, is_integer
from sal_jax.models.cnn import CNN
from sal_jax.models.glai import GlaiMLP
from sal_jax.models.mlp import ACTIVATIONS, MLP
from sal_jax.models.rnn import CELLS, RNN
from sal_jax.models.sparse import SparseMLP
from sal_jax.models.transformer import TextTransformer, ViT, check_settings

FAMILIES = ("mlp", "cnn", "rnn", "glai", "set_mlp", "transformer", "vit")

__all__ = ["CNN", "GlaiMLP", "MLP", "RNN", "SparseMLP", "TextTransformer", "ViT", "FAMILIES", "make_level",
           "make_ladder"]


def make_level(family: str, index: int, model: ml_collections.ConfigDict, num_classes: int,
               vocab_size: int | None = None) -> nn.Module:
    """Level `index` (0-based, 0 = top/simplest) of the built-in `family` ladder described by `model`."""
    depth = model.levels[index]
    if family in ("mlp", "set_mlp") and model.activation not in ACTIVATIONS:
        raise ConfigError(f"config.model.activation: unknown {model.activation!r}; choose from {sorted(ACTIVATIONS)}")
    if family == "mlp":
        return MLP(depth, model.width, num_classes, model.activation)
    if family == "set_mlp":
        epsilon = model.epsilon
        if model.epsilons:
            if len(model.epsilons) != len(model.levels):
                raise ConfigError(f"config.model.epsilons: needs one value per level ({len(model.levels)}), "
                                  f"got {len(model.epsilons)}")
            epsilon = model.epsilons[index]
        return SparseMLP(depth, model.width, num_classes, model.activation, float(epsilon))
    if family == "glai":  # ReLU by definition: its structure is the ReLUs' on/off pattern
        return GlaiMLP(depth, model.width, num_classes)
    if family == "cnn":
        if depth > len(model.channels):
            raise ConfigError(f"config.model.levels: level {index + 1} asks for {depth} blocks but "
                              f"config.model.channels lists only {len(model.channels)}")
        return CNN(tuple(model.channels[:depth]), num_classes, model.batch_norm)
    if family == "rnn":
        if model.cell not in CELLS:
            raise ConfigError(f"config.model.cell: unknown {model.cell!r}; choose from {sorted(CELLS)}")
        if vocab_size is None:
            raise ConfigError("config.model.family: 'rnn' needs a text dataset (token ids and a vocabulary)")
        return RNN(depth, model.hidden, vocab_size, num_classes, model.embed_dim, model.cell)
    if family in ("transformer", "vit"):  # depth = encoder blocks, all of width model.dim
        check_settings(model.dim, model.heads, model.mlp_ratio, model.norm, model.pooling)
        shared = dict(dim=model.dim, heads=model.heads, mlp_ratio=model.mlp_ratio, norm=model.norm,
                      pooling=model.pooling)
        if family == "vit":
            if not is_integer(model.patch) or model.patch <= 0:
                raise ConfigError(f"config.model.patch: must be a positive integer, got {model.patch!r}")
            return ViT(depth, num_classes, patch=model.patch, **shared)
        if vocab_size is None:
            raise ConfigError("config.model.family: 'transformer' needs a text dataset (token ids and a vocabulary)")
        return TextTransformer(depth, vocab_size, num_classes, **shared)
    raise ConfigError(f"config.model.family: unknown family {family!r}; choose from {list(FAMILIES)}")


def make_ladder(model: ml_collections.ConfigDict, num_classes: int, vocab_size: int | None = None) -> list[nn.Module]:
    """All levels, top (simplest) first."""
    return [make_level(model.family, i, model, num_classes, vocab_size) for i in range(len(model.levels))]
