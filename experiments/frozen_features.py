"""Features of a frozen CNN level of this library, for classifier heads on a frozen backbone (issue #14).

    python experiments/frozen_features.py --data_dir=../shared/tensorflow_datasets \\
        --out=experiments/results/cifar10_features/features.npz

The backbone is the CIFAR-10 CNN (16, 32, 64) with BatchNorm (the bottom level of
experiments/configs/cifar10_cnn.py), trained plain by `train_level` (seed 0, batch 128, Adam 1e-3) for
`--epochs` epochs on training images 25,000-49,999 only. Written to --out (a dataset for
`--config.data.name=npz --config.data.path=...`): its features of training images 0-24,999 (the heads'
training set, which the backbone never saw) and of the 10,000 test images, in inference mode: the global
average pool of its last block, i.e. what its own linear head reads (64 numbers per image).
"""
from __future__ import annotations

import json
import os
import sys
import time

from absl import app, flags
import jax
import numpy as np

from sal_jax.config import default_config
from sal_jax.data import load_dataset
from sal_jax.data.arrays import ArrayDataset
from sal_jax.host_memory import keep_freed_host_memory
from sal_jax.level_loop import train_level
from sal_jax.levels import apply_level
from sal_jax.models import CNN

_DATA_DIR = flags.DEFINE_string("data_dir", "", "TFDS folder holding cifar10 ('' = $TFDS_DATA_DIR).")
_OUT = flags.DEFINE_string("out", "experiments/results/cifar10_features/features.npz", "Where to write.")
_EPOCHS = flags.DEFINE_integer("epochs", 10, "Backbone training epochs.")
HEADS_SPLIT = 25_000  # training images below it are the heads'; the backbone learns from the rest


def pooled_features(module, variables, x: np.ndarray, batch: int = 500) -> np.ndarray:
    """The global average pool of the last block's output, in inference mode, batch by batch."""
    forward = jax.jit(lambda v, x: apply_level(module, v, x, train=False)[0][1][-1].mean(axis=(1, 2)))
    return np.concatenate([np.asarray(forward(variables, x[i:i + batch])) for i in range(0, len(x), batch)])


def main(argv):
    del argv
    keep_freed_host_memory()
    config = default_config()
    config.data.name, config.data.data_dir = "cifar10", _DATA_DIR.value
    config.train.epochs, config.train.batch_size, config.train.eval_every = _EPOCHS.value, 128, _EPOCHS.value
    config.checkpoint.enabled, config.tensorboard = False, False
    full = load_dataset(config.data, "cnn")
    backbone_data = ArrayDataset("cifar10 images 25000-49999", full.x_train[HEADS_SPLIT:], full.y_train[HEADS_SPLIT:],
                                 full.x_test, full.y_test, full.num_classes)
    module = CNN((16, 32, 64), full.num_classes)
    start = time.perf_counter()
    run = train_level(module, backbone_data, config, level=1, name="backbone", progress=True)
    features = {"x_train": pooled_features(module, run.variables, full.x_train[:HEADS_SPLIT]),
                "y_train": full.y_train[:HEADS_SPLIT], "x_test": pooled_features(module, run.variables, full.x_test),
                "y_test": full.y_test, "num_classes": full.num_classes}
    os.makedirs(os.path.dirname(_OUT.value) or ".", exist_ok=True)
    np.savez(_OUT.value, **features)
    about = {"backbone": "CNN (16, 32, 64) + BatchNorm", "backbone_epochs": _EPOCHS.value,
             "backbone_test_accuracy": run.final_test_accuracy, "wall_time": time.perf_counter() - start,
             "feature_dim": int(features["x_train"].shape[1])}
    with open(os.path.splitext(_OUT.value)[0] + ".json", "w") as f:
        json.dump(about, f, indent=1)
    print(f"wrote {_OUT.value}: {about}", file=sys.stderr)


if __name__ == "__main__":
    app.run(main)
