"""The teacher-feature cache: a frozen teacher's outputs on the training set, computed once per level.

Without augmentation a training example's input never changes, so neither does what the frozen teacher
makes of it. Computing the teacher's logits and guiding features once, in batches, and reading them in
the train step removes the teacher's forward pass from every step (see BENCHMARKS.md for what it saves).
The cache lives in host memory: (examples x teacher feature size) floats, one level at a time.
"""
from __future__ import annotations

from typing import Callable

import jax
import numpy as np

from sal_jax.data.arrays import batches
from sal_jax.guidance import Guidance
from sal_jax.levels import Variables
from sal_jax.losses import feature_scales
from sal_jax.step import FEATURE_SCALES, TEACHER_LOGITS, teacher_feature_key, teacher_outputs

# Rows of teacher features squared at a time in float64: bounds the statistics' temporary host memory.
SUM_ROWS = 4096


def compile_teacher_forward(guidance: Guidance, teacher_variables: Variables, sample_x: np.ndarray) -> Callable:
    """The teacher's compiled forward pass over batches shaped like `sample_x`: compiled apart from the
    cache's computation, so that a level's clock can leave compilation out (sal_jax.level_loop.train_level)."""
    forward = jax.jit(lambda variables, inputs: teacher_outputs(guidance, variables, {"x": inputs}))
    return forward.lower(teacher_variables, sample_x).compile()


def teacher_cache(guidance: Guidance, teacher_variables: Variables, x: np.ndarray, batch_size: int,
                  forward: Callable | None = None) -> dict[str, np.ndarray]:
    """{teacher_logits, teacher_feature_<j>}: per-example arrays aligned with `x`, for `batches(extras=)`.
    forward: `compile_teacher_forward`'s result for batches of `batch_size` (default: compiled here)."""
    if forward is None:
        forward = compile_teacher_forward(guidance, teacher_variables, x[:batch_size])
    outputs = [forward(teacher_variables, batch["x"])
               for batch in batches(x, np.zeros(len(x), np.int32), batch_size)]
    outputs = jax.device_get(outputs)  # one host sync for the whole pass
    logits = np.concatenate([o[0] for o in outputs])[: len(x)]  # drop the last batch's padding
    cache = {TEACHER_LOGITS: logits}
    for j in guidance.alignment:
        cache[teacher_feature_key(j)] = np.concatenate([o[1][j] for o in outputs])[: len(x)]
    return cache


def feature_sum_squares(cache: dict[str, np.ndarray], alignment: dict[int, int]
                        ) -> tuple[dict[int, np.ndarray], dict[int, int]]:
    """Per teacher feature j of a cache (real rows only): the float64 sum of its squares per unit of the
    last axis, and how many values each unit's sum has (rows x positions)."""
    sums, counts = {}, {}
    for j in alignment:
        feature = cache[teacher_feature_key(j)]
        units = feature.shape[-1]
        sums[j] = np.zeros(units, np.float64)
        for start in range(0, len(feature), SUM_ROWS):
            block = feature[start:start + SUM_ROWS].astype(np.float64).reshape(-1, units)
            sums[j] += np.einsum("ij,ij->j", block, block)
        counts[j] = int(np.prod(feature.shape[:-1], dtype=np.int64))
    return sums, counts


def with_feature_scales(guidance: Guidance, teacher_variables: Variables, x: np.ndarray, batch_size: int,
                        forward: Callable | None = None, cache: dict[str, np.ndarray] | None = None) -> Variables:
    """`teacher_variables` plus, under FEATURE_SCALES, config.guidance.feature_norm's divisors
    (sal_jax.losses.feature_scales): the frozen teacher's RMS over the training inputs `x`, in inference
    mode; unchanged when guidance.feature_norm is "none".

    cache: `teacher_cache`'s result on `x`, if there is one: the statistics are read from it. Else the
    teacher runs over `x` in parts of whole batches (the cache's own pass, a part's cache dropped after
    its sums), so the statistics are the same either way and need no cache in memory. Padding rows never
    count: `teacher_cache` drops them.
    """
    if guidance.feature_norm == "none" or not guidance.use_hidden:
        return teacher_variables
    rows = batch_size * max(1, SUM_ROWS // batch_size)  # whole batches: the same batches as one pass
    if not cache and forward is None:
        forward = compile_teacher_forward(guidance, teacher_variables, x[:batch_size])
    parts = [cache] if cache else (
        teacher_cache(guidance, teacher_variables, x[start:start + rows], batch_size, forward)
        for start in range(0, len(x), rows))
    sums, counts = {j: 0.0 for j in guidance.alignment}, {j: 0 for j in guidance.alignment}
    for part in parts:
        part_sums, part_counts = feature_sum_squares(part, guidance.alignment)
        for j in guidance.alignment:
            sums[j] = sums[j] + part_sums[j]
            counts[j] += part_counts[j]
    scales = feature_scales(sums, counts, guidance.feature_norm)
    return {**teacher_variables, FEATURE_SCALES: scales}
