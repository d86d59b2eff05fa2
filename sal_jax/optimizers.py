"""`config.train.optimizer` by name: the one table that both builds the optimizer and validates the name."""
from __future__ import annotations

import ml_collections
import optax

OPTIMIZERS = {"adam": optax.adam, "adamw": optax.adamw, "sgd": lambda lr: optax.sgd(lr, momentum=0.9)}


def make_optimizer(train: ml_collections.ConfigDict) -> optax.GradientTransformation:
    return OPTIMIZERS[train.optimizer](train.learning_rate)
