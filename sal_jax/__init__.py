"""sal_jax: Self-Abstraction Learning in JAX/Flax.

A ladder of levels of growing complexity is trained top-down: the simplest level learns the task, then
each more complex level learns it while matching its hidden features and outputs to the frozen level
above. The functional pieces compose: `make_level` / your own Flax modules (Linen or NNX, features returned
or named: `FeaturesByName`, `from_nnx`, `ladder_from`) -> `make_guidance` ->
`make_train_step` -> `train_level` / `train_ladder`; `predict` runs a trained level, `num_params` sizes one.
"""
from __future__ import annotations

import importlib
from typing import Any

# Each public name and its module, imported at first use (PEP 562): importing JAX and Flax takes seconds,
# and the command line (sal_jax.main) must answer --help and report a bad config value before that.
_EXPORTS = {
    "sal_jax.data.arrays": ["ArrayDataset"],
    "sal_jax.determinism": ["determinism_enabled", "enable_determinism"],
    "sal_jax.errors": ["ConfigError", "TrainingDiverged"],
    "sal_jax.guidance": ["Guidance", "make_guidance"],
    "sal_jax.host_memory": ["keep_freed_host_memory"],
    "sal_jax.auto_ladder": ["ladder_from"],
    "sal_jax.features": ["FeaturesByName"],
    "sal_jax.hooks": ["Hook"],
    "sal_jax.ladder": ["LadderResult", "train_ladder"],
    "sal_jax.level_loop": ["train_level"],
    "sal_jax.levels": ["num_params", "predict"],
    "sal_jax.losses": ["align_layers", "cross_entropy", "feature_distance", "hidden_guidance", "output_guidance"],
    "sal_jax.models": ["make_ladder", "make_level"],
    "sal_jax.nnx_levels": ["from_nnx"],
    "sal_jax.records": ["LevelRun"],
    "sal_jax.step": ["TrainState", "init_state", "make_eval_step", "make_train_step"],
}
_MODULE_OF = {name: module for module, names in _EXPORTS.items() for name in names}
__all__ = sorted(_MODULE_OF)


def __getattr__(name: str) -> Any:
    if name not in _MODULE_OF:
        raise AttributeError(f"module 'sal_jax' has no attribute {name!r}")
    value = getattr(importlib.import_module(_MODULE_OF[name]), name)
    globals()[name] = value  # later look-ups skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])

