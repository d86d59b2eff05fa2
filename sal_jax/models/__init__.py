"""The built-in levels' modules, and `make_level`: the one place a config becomes a Flax module, through
its family's record (sal_jax.families).

A level is any Flax module whose `__call__(x, train=False)` returns `(logits, features)`, features being
an ordered tuple of hidden activations (batch first). User modules that follow this contract plug into
the trainer unchanged.
"""
from __future__ import annotations

import ml_collections
import flax.linen as nn

from sal_jax import families
from sal_jax.models.cnn import CNN
from sal_jax.models.glai import GlaiMLP
from sal_jax.models.mlp import MLP
from sal_jax.models.rnn import RNN
from sal_jax.models.sparse import SparseMLP
from sal_jax.models.transformer import TextTransformer, ViT

__all__ = ["CNN", "GlaiMLP", "MLP", "RNN", "SparseMLP", "TextTransformer", "ViT", "make_level", "make_ladder"]


def make_level(family: str, index: int, model: ml_collections.ConfigDict, num_classes: int,
               vocab_size: int | None = None) -> nn.Module:
    """Level `index` (0-based, 0 = top/simplest) of the registered `family`'s ladder described by `model`."""
    return families.get(family).build(index, model, num_classes, vocab_size)


def make_ladder(model: ml_collections.ConfigDict, num_classes: int, vocab_size: int | None = None) -> list[nn.Module]:
    """All levels, top (simplest) first."""
    return [make_level(model.family, i, model, num_classes, vocab_size) for i in range(len(model.levels))]
