"""A ladder from a target model: the levels are smaller versions of the model the user wants to train.

    levels = ladder_from(lambda depth: MyNet(blocks=depth), depth=16, features=("block_*",))

builds MyNet at depths 2, 4, 8, 16 (top, simplest, first): each level halves the depth of the one below it
down to 1-2 blocks, or `depths` lists them. With `widths` (one per level) the constructor is also called
with `width=`. A constructor may return a Linen module or an `nnx.Module` (then it is built once per level:
give it its own `nnx.Rngs`); `features` names the feature submodules of a model that returns logits only
(sal_jax.features, sal_jax.nnx_levels), else the model returns (logits, features) itself. Teacher and
student features are aligned by relative depth as for any ladder (config.guidance.layer_map to choose).
With `sample_x`, the ladder is checked to grow (each level more parameters than the one above) before
anything trains; train_ladder checks it in any case.
"""
from __future__ import annotations

from typing import Any, Callable, Sequence

import flax.linen as nn
import jax
from flax import nnx

from sal_jax.errors import ConfigError
from sal_jax.features import FeaturesByName
from sal_jax.nnx_levels import from_nnx
from sal_jax.validation import check_growth


def halving_depths(depth: int) -> tuple[int, ...]:
    """depth, depth // 2, ... down to 1 or 2, simplest first: 16 -> (2, 4, 8, 16); 12 -> (1, 3, 6, 12)."""
    if depth < 1:
        raise ConfigError(f"ladder_from: depth must be >= 1, got {depth}")
    depths = [depth]
    while depths[-1] > 2:
        depths.append(depths[-1] // 2)
    return tuple(reversed(depths))


def as_level(model: Any, features: Sequence[str] | None = None) -> nn.Module:
    """Any supported model as a level: an nnx.Module through from_nnx, a Linen module returning logits through
    FeaturesByName when `features` names its feature submodules, a (logits, features) Linen module as it is."""
    if isinstance(model, nnx.Module):
        return from_nnx(model, features or ())
    if not isinstance(model, nn.Module):
        raise ConfigError(f"ladder_from: the constructor returned {type(model).__name__}, not a flax.linen or "
                          f"flax.nnx Module")
    return FeaturesByName(model, tuple(features)) if features else model


def ladder_from(build: Callable[..., Any], depth: int | None = None, *, depths: Sequence[int] | None = None,
                widths: Sequence[int] | None = None, features: Sequence[str] | None = None,
                sample_x: jax.Array | None = None) -> list[nn.Module]:
    """The levels, top (simplest) first: `build(depth)` (or `build(depth, width=w)`) per level. Give the target
    `depth` (halving_depths) or the `depths` themselves."""
    if (depth is None) == (depths is None):
        raise ConfigError("ladder_from: give the target depth or the list of depths, not both")
    depths = halving_depths(depth) if depths is None else tuple(depths)
    if widths is not None and len(widths) != len(depths):
        raise ConfigError(f"ladder_from: widths needs one value per level ({len(depths)}), got {len(widths)}")
    levels = [as_level(build(d) if widths is None else build(d, width=widths[i]), features)
              for i, d in enumerate(depths)]
    if sample_x is not None:
        check_growth(levels, sample_x)
    return levels
