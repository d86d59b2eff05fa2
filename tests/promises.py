"""What a test may promise on the backend it runs on (README, "Reproducibility").

Two kinds of comparison, two promises:

* `assert_reproduced`: the *same* program run twice (again, resumed after a kill, in another process, with
  its data gathered elsewhere). Bit for bit on a CPU (XLA:CPU is deterministic) and on a GPU or TPU in
  deterministic mode (sal_jax.enable_determinism; tests/conftest.py turns it on for the suite). In a GPU's
  default mode, kernels that add with atomics (convolution gradients, scatter-adds, some reductions) sum
  in a varying order: equal to float32 rounding, grown over the training steps compared.
* `assert_same_math`: two *different* programs that are equal in exact arithmetic (a guided step with
  λ = 0 and the plain step; a cached and an uncached teacher). XLA:CPU happens to give the same bits
  (tested here); on a GPU, XLA fuses and orders the two programs' float32 sums differently even in
  deterministic mode (7e-9 measured on an H200 for the λ = 0 gradient): equal to float32 rounding.

Each call names the tolerance that applies where bits are not promised, with the reason beside it.
Comparisons that involve no arithmetic (a copy, a restore, a gather, a max) stay bitwise everywhere.
"""
from __future__ import annotations

from typing import Any

import chex
import jax

from sal_jax.determinism import determinism_enabled

ON_CPU = jax.default_backend() == "cpu"
REPRODUCIBLE = ON_CPU or determinism_enabled()


def assert_reproduced(got: Any, want: Any, *, atol: float, rtol: float = 0.0) -> None:
    """Bitwise where the backend reproduces a program exactly, else within (atol, rtol)."""
    if REPRODUCIBLE:
        chex.assert_trees_all_equal(got, want)
    else:
        chex.assert_trees_all_close(got, want, atol=atol, rtol=rtol)


def assert_same_math(got: Any, want: Any, *, atol: float, rtol: float = 0.0) -> None:
    """Bitwise on a CPU, else within (atol, rtol): two programs equal in exact arithmetic."""
    if ON_CPU:
        chex.assert_trees_all_equal(got, want)
    else:
        chex.assert_trees_all_close(got, want, atol=atol, rtol=rtol)


# Where float32 matmuls run in full float32 (a CPU; a GPU or TPU in deterministic mode, which sets
# "highest" precision), two matmul orders agree to float32 rounding; a GPU's default TF32 keeps 10
# mantissa bits (relative error 2^-11 per product, 5.7e-4 measured on an H200 in test_step's projection
# test), a TPU's default bfloat16 passes 8.
FULL_PRECISION = ON_CPU or jax.config.jax_default_matmul_precision == "highest"
MATMUL_RTOL = 1e-5 if FULL_PRECISION else 5e-3
