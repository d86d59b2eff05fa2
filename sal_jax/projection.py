"""FitNets-style regressors P_j that map a student feature to the shape of the teacher feature it matches.

A projection exists only for pairs whose shapes differ; it is trained with the student while that level
trains and is dropped afterwards (it is not part of the level's model). Shapes come from a dummy forward
(`jax.eval_shape`), so nothing needs to know the family.
"""
from __future__ import annotations

import math
from typing import Mapping, Sequence

import flax.linen as nn
import jax

from sal_jax.errors import ConfigError

Shape = tuple[int, ...]


class Projection(nn.Module):
    """Student feature (B, *s) -> (B, *target). Spatial maps are resized (no parameters) to the teacher's
    resolution; a learned linear map on the last axis then matches the channel/width count."""

    target: Shape  # per-example shape of the teacher feature

    @nn.compact
    def __call__(self, h: jax.Array) -> jax.Array:
        if h.ndim > 2 and len(self.target) == 1:  # spatial student, vector teacher: pool space away
            h = h.mean(axis=tuple(range(1, h.ndim - 1)))
        if h.ndim != len(self.target) + 1:
            raise ConfigError(f"config.guidance: cannot project a student feature of shape {h.shape[1:]} "
                              f"onto a teacher feature of shape {self.target}")
        map_channels = (nn.Dense(self.target[-1], name="linear") if h.shape[-1] != self.target[-1]
                        else lambda features: features)
        # Both maps are linear and commute (resizing keeps constants, so the bias too): map the channels at
        # the coarser resolution. A deeper student's maps are smaller than its teacher's, so this maps
        # before upsampling, on a quarter of the positions per halving.
        upsampling = math.prod(h.shape[1:-1]) < math.prod(self.target[:-1])
        if upsampling:
            h = map_channels(h)
        if h.shape[1:-1] != self.target[:-1]:
            h = jax.image.resize(h, (h.shape[0], *self.target[:-1], h.shape[-1]), method="linear")
        if not upsampling:
            h = map_channels(h)
        return h


class Projections(nn.Module):
    """One Projection per aligned pair whose shapes differ, named `teacher_<j>`; others pass through."""

    alignment: Mapping[int, int]            # teacher j -> student a(j), 1-based
    student_shapes: Sequence[Shape]         # per-example shapes of the student's features
    teacher_shapes: Sequence[Shape]

    @nn.compact
    def __call__(self, student_features: Sequence[jax.Array]) -> dict[int, jax.Array]:
        out = {}
        for j, a in self.alignment.items():
            h = student_features[a - 1]
            if self.student_shapes[a - 1] != self.teacher_shapes[j - 1]:
                h = Projection(self.teacher_shapes[j - 1], name=f"teacher_{j}")(h)
            out[j] = h
        return out

