"""SAL's loss terms as pure functions of arrays.

Every batch carries per-example weights (0 for padding), so each term is a weighted mean over examples.
"""
from __future__ import annotations

from typing import Mapping

import jax
import jax.numpy as jnp
import numpy as np
import optax

from sal_jax.errors import ConfigError

DISTANCES = ("mse", "cosine")
LAYER_REDUCTIONS = ("sum", "mean")              # config.guidance.layer_reduction
FEATURE_NORMS = ("none", "unit_rms", "layer_rms")  # config.guidance.feature_norm
# Floors of the teacher RMS that divides features. A unit that is 0 on every training example (a dead ReLU)
# has RMS 0: dividing by it gives 0/0 (teacher) and s/0 (student), and dividing by a tiny floor turns the
# student's value there into the whole loss. Measured on digits (MLP level 3 guided by level 2, 5 epochs,
# 3 and 5 of the teacher's 64 units dead per layer): test accuracy 0.89 without feature_norm, 0.33 with
# unit_rms floored at 1e-6, 0.32-0.35 at 0.01 x the layer's RMS, 0.86-0.89 at 0.1 x, 0.88-0.89 at 0.3 x.
# So a unit's RMS is floored at FEATURE_RMS_FLOOR x its layer's RMS (a unit then weighs at most
# 1/FLOOR^2 = 100x a typical one), and every RMS at FEATURE_RMS_EPS (a layer that is 0 everywhere).
FEATURE_RMS_FLOOR = 0.1
FEATURE_RMS_EPS = 1e-6


def weighted_mean(per_example: jax.Array, weight: jax.Array) -> jax.Array:
    return jnp.sum(per_example * weight) / jnp.maximum(jnp.sum(weight), 1.0)


def cross_entropy(logits: jax.Array, labels: jax.Array, weight: jax.Array) -> jax.Array:
    """Task loss: mean softmax cross-entropy."""
    return weighted_mean(optax.softmax_cross_entropy_with_integer_labels(logits, labels), weight)


def feature_distance(student: jax.Array, teacher: jax.Array, weight: jax.Array, kind: str = "mse") -> jax.Array:
    """D(student, teacher) for one pair of same-shape features; the teacher gets no gradient.

    mse: mean squared difference over feature elements; cosine: 1 - cos of the flattened features.
    """
    teacher = jax.lax.stop_gradient(teacher)
    s = student.reshape(student.shape[0], -1)
    t = teacher.reshape(teacher.shape[0], -1)
    if kind == "mse":
        per_example = jnp.mean((s - t) ** 2, axis=1)
    elif kind == "cosine":
        per_example = 1.0 - optax.cosine_similarity(s, t, epsilon=1e-8)
    else:
        raise ConfigError(f"config.guidance.distance: unknown {kind!r}; choose from {list(DISTANCES)}")
    return weighted_mean(per_example, weight)


def output_guidance(student_logits: jax.Array, teacher_logits: jax.Array, weight: jax.Array,
                    temperature: float) -> jax.Array:
    """T^2 * KL(softmax(teacher/T) || softmax(student/T)), Hinton et al.'s scaling keeps gradients O(1)."""
    t = temperature
    teacher_logp = jax.nn.log_softmax(jax.lax.stop_gradient(teacher_logits) / t)
    student_logp = jax.nn.log_softmax(student_logits / t)
    kl = jnp.sum(jnp.exp(teacher_logp) * (teacher_logp - student_logp), axis=-1)
    return t * t * weighted_mean(kl, weight)


def align_layers(n_teacher: int, n_student: int, mapping: Mapping[int, int] | None = None) -> dict[int, int]:
    """Which student feature each teacher feature guides, 1-based: {teacher j: student a(j)}.

    Default a(j) = round(j * n_student / n_teacher) with halves rounded up (not Python's banker's
    rounding), so the deepest teacher feature always guides the deepest student feature. An explicit
    `mapping` replaces it and is checked against both depths.
    """
    if n_teacher < 1 or n_student < 1:
        raise ConfigError(f"config.guidance: both levels need hidden features (teacher has {n_teacher}, "
                          f"student has {n_student})")
    if mapping is None:
        return {j: max(1, int(j * n_student / n_teacher + 0.5)) for j in range(1, n_teacher + 1)}
    for j, a in mapping.items():
        if not 1 <= j <= n_teacher:
            raise ConfigError(f"config.guidance.layer_map: teacher layer {j} does not exist "
                              f"(the teacher has layers 1..{n_teacher})")
        if not 1 <= a <= n_student:
            raise ConfigError(f"config.guidance.layer_map: student layer {a} does not exist "
                              f"(the student has layers 1..{n_student})")
    return dict(mapping)


def parse_layer_map(text: str) -> dict[int, int] | None:
    """'1:2,2:4' -> {1: 2, 2: 4}; '' -> None (use the relative-depth rule)."""
    if not text.strip():
        return None
    try:
        pairs = [item.split(":") for item in text.split(",")]
        return {int(t): int(s) for t, s in pairs}
    except ValueError:
        raise ConfigError(f"config.guidance.layer_map: expected 'teacher:student,...' with 1-based layer "
                          f"numbers, got {text!r}") from None


def hidden_guidance(aligned_student: Mapping[int, jax.Array], teacher_features: Mapping[int, jax.Array],
                    weight: jax.Array, kind: str = "mse", reduction: str = "sum") -> jax.Array:
    """Σ_j D(P_j(h_a(j)), h^T_j) ("sum"), or that sum over the number of pairs ("mean": a weight that does
    not grow with the teacher's depth). Both map teacher feature j (1-based) to a feature: the student's the
    one that matches it, already projected to the teacher's shape."""
    total = sum(feature_distance(h, teacher_features[j], weight, kind) for j, h in aligned_student.items())
    if reduction == "sum":
        return total
    if reduction == "mean":
        return total / len(aligned_student)
    raise ConfigError(f"config.guidance.layer_reduction: unknown {reduction!r}; choose from {list(LAYER_REDUCTIONS)}")


def normalize_features(features: Mapping[int, jax.Array], scales: Mapping[int, jax.Array]) -> dict[int, jax.Array]:
    """{j: feature j / scale j}: a scale of shape (units,) divides the last axis (per unit, or per channel
    of a conv feature), a scalar the whole feature. Scales come from `feature_scales`."""
    return {j: f / scales[j] for j, f in features.items()}


def feature_scales(sum_squares: Mapping[int, np.ndarray], counts: Mapping[int, int], norm: str
                   ) -> dict[int, np.ndarray]:
    """The teacher's divisors for config.guidance.feature_norm, from its features over the training set:
    sum_squares[j] the sum of feature j's squares per unit of its last axis (over examples and any other
    axes), counts[j] how many values each unit's sum has (examples x positions).

    layer_rms: L_j = max(sqrt(Σ sum_squares / (counts x units)), FEATURE_RMS_EPS), one scalar per layer;
    unit_rms: max(sqrt(sum_squares / counts), FEATURE_RMS_FLOOR x L_j) per unit (L_j >= EPS, so never 0);
    "none": {} (nothing is divided).
    """
    if norm == "none":
        return {}
    if norm not in FEATURE_NORMS:
        raise ConfigError(f"config.guidance.feature_norm: unknown {norm!r}; choose from {list(FEATURE_NORMS)}")
    scales = {}
    for j, sums in sum_squares.items():
        sums = np.asarray(sums, np.float64)
        layer = max(np.sqrt(np.sum(sums) / (counts[j] * sums.size)), FEATURE_RMS_EPS)
        scale = np.maximum(np.sqrt(sums / counts[j]), FEATURE_RMS_FLOOR * layer) if norm == "unit_rms" else layer
        scales[j] = np.asarray(scale, np.float32)
    return scales
