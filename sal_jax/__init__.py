"""sal_jax: Self-Abstraction Learning in JAX/Flax.

A ladder of levels of growing complexity is trained top-down: the simplest level learns the task, then
each more complex level learns it while matching its hidden features and outputs to the frozen level
above. The functional pieces compose: `make_level` / your own Flax modules (Linen or NNX, features returned
or named: `FeaturesByName`, `from_nnx`, `ladder_from`) -> `make_guidance` ->
`make_train_step` -> `train_level` / `train_ladder`; `predict` runs a trained level, `num_params` sizes one.
"""
from sal_jax.data.arrays import ArrayDataset
from sal_jax.determinism import determinism_enabled, enable_determinism
from sal_jax.errors import ConfigError, TrainingDiverged
from sal_jax.guidance import Guidance, make_guidance
from sal_jax.host_memory import keep_freed_host_memory
from sal_jax.auto_ladder import ladder_from
from sal_jax.features import FeaturesByName
from sal_jax.ladder import LadderResult, LevelRun, train_ladder, train_level
from sal_jax.levels import num_params, predict
from sal_jax.losses import align_layers, cross_entropy, feature_distance, hidden_guidance, output_guidance
from sal_jax.models import make_ladder, make_level
from sal_jax.nnx_levels import from_nnx
from sal_jax.step import TrainState, init_state, make_eval_step, make_train_step

__all__ = [
    "ArrayDataset", "ConfigError", "FeaturesByName", "Guidance", "LadderResult", "LevelRun", "TrainState", "TrainingDiverged", "align_layers",
    "cross_entropy", "determinism_enabled", "enable_determinism", "feature_distance", "from_nnx", "hidden_guidance",
    "init_state", "keep_freed_host_memory", "ladder_from", "make_eval_step", "make_guidance", "make_ladder", "make_level",
    "make_train_step", "num_params", "output_guidance", "predict", "train_ladder", "train_level",
]
