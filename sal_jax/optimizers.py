"""`config.train.optimizer` by name: the one table that both builds the optimizer and validates the name."""
from __future__ import annotations

import inspect

import ml_collections
import optax

OPTIMIZERS = {"adam": optax.adam, "adamw": optax.adamw, "sgd": lambda lr: optax.sgd(lr, momentum=0.9)}


# adamw's weight decay when config.train.weight_decay is None
ADAMW_WEIGHT_DECAY = inspect.signature(optax.adamw).parameters["weight_decay"].default


def weight_decay(train: ml_collections.ConfigDict) -> float:
    """adamw's decoupled weight decay: config.train.weight_decay, or optax's default when it is None."""
    decay = train.get("weight_decay")
    return ADAMW_WEIGHT_DECAY if decay is None else float(decay)


def make_optimizer(train: ml_collections.ConfigDict) -> optax.GradientTransformation:
    if train.optimizer == "adamw":
        return optax.adamw(train.learning_rate, weight_decay=weight_decay(train))
    return OPTIMIZERS[train.optimizer](train.learning_rate)
