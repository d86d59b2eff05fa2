"""Experiment 1 — MNIST, MLP depth ladder (1, 2, 4, 8 hidden layers of 128, ReLU), data-scarce sweep.

SAL vs plain (epoch- and time-matched) and the hidden-only / output-only ablations, at 10, 50, 100 and
500 training examples per class and on the full training set; 8 seeds; test on all 10,000 test digits.

Command:
    sal-jax --config=experiments/configs/mnist_mlp_scarce.py --workdir=experiments/results/mnist_mlp_scarce
Data: TFDS `mnist` under $TFDS_DATA_DIR or --config.data.data_dir (../shared/tensorflow_datasets here).
Run time on 2 CPU cores: 15 minutes for 8 seeds, every level also trained plain (889 s, the wall_time in
experiments/results/mnist_mlp_scarce/results.json.gz; commit 7bdaf51, 2026-11-27, sharing the cores with
another run and the test suite: an upper bound). `--config.quick=True`: one small
cell, 40 s measured 2026-11-26 on a 2-core CPU shared with other jobs (an upper bound).
"""
from sal_jax.config import default_config


def get_config():
    config = default_config()
    config.data.name = "mnist"
    config.num_seeds = 8
    config.ablations = True
    config.baselines.every_level = True  # each level also trained plain: RESULTS.md's "which level is best"
    config.model.family = "mlp"
    config.model.levels = (1, 2, 4, 8)
    config.model.width = 128
    config.model.activation = "relu"
    config.train.batch_size = 64
    config.train.eval_every = 5
    config.sweep.per_class = (10, 50, 100, 500, 0)
    config.sweep.epochs = (100, 40, 30, 15, 3)
    config.quick_overrides = (("sweep.per_class", (10,)), ("sweep.epochs", (5,)), ("num_seeds", 2),
                              ("model.levels", (1, 2)), ("model.width", 32))
    return config
