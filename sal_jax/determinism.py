"""Reproducible runs on GPUs and TPUs: `config.deterministic`, `enable_determinism()`.

On a CPU, XLA's kernels are deterministic and float32 matmuls run in full float32: a run is bit-identical
run to run and across resume with or without this switch. On a GPU, XLA picks the fastest kernels by
default, and some of them add in an order that changes from run to run (atomics in scatter-adds,
reductions and convolution gradients); float32 matmuls there, and on TPUs, run at reduced precision
(TF32 / bfloat16 passes). The switch asks XLA for deterministic GPU kernels and JAX for full-precision
float32 matmuls, which makes a run bit-identical run to run and across resume on the same GPU model and
software versions (README, "Reproducibility").

XLA reads its flags once, when JAX starts its backend (the first computation or device query), so the
switch must be thrown before that: the `sal-jax` command does it right after reading its config; research
code calls `enable_determinism()` first thing, or lets `train_ladder` do it while nothing has touched a
device yet. Later it is an error rather than a silently half-deterministic run.
"""
from __future__ import annotations

import os

import jax

from sal_jax.errors import ConfigError

# Deterministic GPU kernels (also keeps the non-deterministic ones out of autotuning). Every jaxlib
# registers XLA's GPU flags, so CPU and TPU runs accept and ignore it (an unknown flag would abort).
XLA_FLAG = "--xla_gpu_deterministic_ops=true"
MATMUL_PRECISION = "highest"  # float32 matmuls in float32 on GPUs (not TF32) and TPUs (not bfloat16 passes)


def _backend_started() -> bool:
    # JAX has no public query that does not itself start the backend.
    from jax._src import xla_bridge

    return xla_bridge.backends_are_initialized()


def _flag_set() -> bool:
    return XLA_FLAG in os.environ.get("XLA_FLAGS", "").split()


def determinism_enabled() -> bool:
    """Whether this process runs with deterministic kernels and full-precision float32 matmuls."""
    return _flag_set() and jax.config.jax_default_matmul_precision == MATMUL_PRECISION


def enable_determinism() -> None:
    """Deterministic kernels and full-precision matmuls for this process; call before anything uses JAX.

    Raises ConfigError if JAX's backend has already started without them (its flags are read then).
    """
    if determinism_enabled():
        return
    if _backend_started() and not _flag_set():
        raise ConfigError("config.deterministic: JAX's backend has already started, so XLA can no longer "
                          "switch to deterministic kernels; call sal_jax.enable_determinism() before any "
                          f"JAX computation, or set XLA_FLAGS={XLA_FLAG} before starting Python")
    os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {XLA_FLAG}".strip()
    jax.config.update("jax_default_matmul_precision", MATMUL_PRECISION)


def apply_determinism(deterministic: bool) -> None:
    """`config.deterministic`: turn the switch on if asked (there is no turning it off in a process)."""
    if not isinstance(deterministic, bool):
        raise ConfigError(f"config.deterministic: must be True or False, got {deterministic!r}")
    if deterministic:
        enable_determinism()
