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
from sal_jax.step import TEACHER_LOGITS, teacher_feature_key, teacher_outputs


def compile_teacher_forward(guidance: Guidance, teacher_variables: Variables, sample_x: np.ndarray) -> Callable:
    """The teacher's compiled forward pass over batches shaped like `sample_x`: compiled apart from the
    cache's computation, so that a level's clock can leave compilation out (sal_jax.ladder.train_level)."""
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
