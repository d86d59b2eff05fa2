"""Experiment 3 — CIFAR-10, small CNN ladder (1, 2, 3 conv blocks of 16, 32, 64 channels, BatchNorm).

SAL vs plain (epoch- and time-matched) and both ablations, 8 seeds, at 500 and 1,000 training examples
per class; test on all 10,000 test images. The
CIFAR-10 copy behind experiments/results (../shared) is a JPEG re-encoding, so those accuracies are not comparable
to papers; a copy prepared by TFDS (README, "Datasets") has the original pixels.

Command:
    sal-jax --config=experiments/configs/cifar10_cnn.py --workdir=experiments/results/cifar10_cnn
Run time on 2 CPU cores: 66 minutes (3947 s; 8 seeds, every level also trained plain; measured 2026-11-27,
started at commit 05e3fc8, whose changes since 7bdaf51 train these levels bit for bit alike, on one core
while the other ran experiments and tests: an upper bound; the wall_time in
experiments/results/cifar10_cnn/results.json.gz). `--config.quick=True`: one small cell, 84 s measured 2026-11-26 on a 2-core
CPU shared with other jobs (an upper bound).
"""
from sal_jax.config import default_config


def get_config():
    config = default_config()
    config.data.name = "cifar10"
    config.num_seeds = 8
    config.ablations = True
    config.baselines.every_level = True  # each level also trained plain: RESULTS.md's "which level is best"
    config.model.family = "cnn"
    config.model.levels = (1, 2, 3)
    config.model.channels = (16, 32, 64)
    config.model.batch_norm = True
    config.train.batch_size = 64
    config.train.eval_every = 2
    config.sweep.per_class = (500, 1000)
    config.sweep.epochs = (10, 4)
    config.quick_overrides = (("sweep.per_class", (20,)), ("sweep.epochs", (2,)), ("num_seeds", 2),
                              ("model.levels", (1, 2)), ("model.channels", (8, 16)))
    return config
