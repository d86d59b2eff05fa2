"""What guides one level: the frozen teacher module, the layer alignment, the projections, the weights.

`make_guidance` turns config values into a static `Guidance` that the jitted step closes over; the
teacher's *parameters* are not part of it, they enter the step as an argument.
"""
from __future__ import annotations

import dataclasses

import flax.linen as nn
import jax
import ml_collections
import optax

from sal_jax.errors import ConfigError
from sal_jax.levels import abstract_level
from sal_jax.losses import align_layers, parse_layer_map
from sal_jax.projection import Projections

SCHEDULES = ("constant", "linear_decay")


@dataclasses.dataclass(frozen=True)
class Guidance:
    teacher: nn.Module
    alignment: dict[int, int]              # teacher feature j -> student feature a(j), 1-based
    projections: Projections | None        # None when every aligned pair already has equal shapes
    hidden_weight: optax.Schedule          # step -> λ_h
    output_weight: optax.Schedule          # step -> λ_o
    use_hidden: bool                       # False when λ_h is identically 0: the term is not computed
    use_output: bool
    temperature: float
    distance: str
    layer_reduction: str = "sum"           # the hidden term over matched layers: "sum" or "mean"
    # "none", "unit_rms" or "layer_rms": features divided by the teacher's RMS before the distance. The
    # divisors are data, not part of this static object: they travel in the teacher variables
    # (sal_jax.step.FEATURE_SCALES), computed by sal_jax.teacher_cache.teacher_feature_scales.
    feature_norm: str = "none"

    @property
    def active(self) -> bool:
        return self.use_hidden or self.use_output


def weight_schedule(value: float, kind: str, total_steps: int) -> optax.Schedule:
    """λ over a level's training: constant, or linear decay to 0 at its last step."""
    if kind == "constant":
        return optax.constant_schedule(value)
    if kind == "linear_decay":
        return optax.linear_schedule(value, 0.0, max(total_steps, 1))
    raise ConfigError(f"config.guidance.schedule: unknown {kind!r}; choose from {list(SCHEDULES)}")


def make_guidance(student: nn.Module, teacher: nn.Module, sample_x: jax.Array,
                  config: ml_collections.ConfigDict, total_steps: int) -> Guidance:
    """Static guidance for `student` by the frozen `teacher`; shapes from abstract forwards only."""
    (_, student_feats), _ = abstract_level(student, sample_x)
    (_, teacher_feats), _ = abstract_level(teacher, sample_x)
    alignment = align_layers(len(teacher_feats), len(student_feats), parse_layer_map(config.layer_map))
    student_shapes = tuple(tuple(f.shape[1:]) for f in student_feats)
    teacher_shapes = tuple(tuple(f.shape[1:]) for f in teacher_feats)
    use_hidden = config.hidden_weight != 0
    needs_projection = any(student_shapes[a - 1] != teacher_shapes[j - 1] for j, a in alignment.items())
    projections = (Projections(alignment, student_shapes, teacher_shapes)
                   if use_hidden and needs_projection else None)
    return Guidance(
        teacher=teacher, alignment=alignment, projections=projections,
        hidden_weight=weight_schedule(config.hidden_weight, config.schedule, total_steps),
        output_weight=weight_schedule(config.output_weight, config.schedule, total_steps),
        use_hidden=use_hidden, use_output=config.output_weight != 0,
        temperature=float(config.temperature), distance=config.distance,
        layer_reduction=config.get("layer_reduction", "sum"), feature_norm=config.get("feature_norm", "none"))
