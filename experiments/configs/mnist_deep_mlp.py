"""Experiment 2 — MNIST, deep sigmoid MLP without normalisation: the vanishing-gradient regime.

Ladder of 2, 4, 8 and 16 hidden layers of 128 sigmoid units (no normalisation, no residuals); SAL vs
plain (epoch- and time-matched) and both ablations, 8 seeds, on 500 examples per class and on 5,000 per
class. Per-layer gradient norms of the 16-layer model are recorded every epoch and plotted (plain vs SAL).
Swap the activation with --config.model.activation=tanh.

Command:
    sal-jax --config=experiments/configs/mnist_deep_mlp.py --workdir=experiments/results/mnist_deep_mlp
Run time on 2 CPU cores: 20 minutes (1205 s; measured 2026-11-27 at commit 7bdaf51, 8 seeds, every level
also trained plain, on one core while the other ran experiments; the wall_time in
experiments/results/mnist_deep_mlp/results.json.gz). `--config.quick=True`: one small
cell, 31 s measured 2026-11-26 on a 2-core CPU shared with other jobs (an upper bound).
"""
from sal_jax.config import default_config


def get_config():
    config = default_config()
    config.data.name = "mnist"
    config.num_seeds = 8
    config.ablations = True
    config.baselines.every_level = True  # each level also trained plain: RESULTS.md's "which level is best"
    config.model.family = "mlp"
    config.model.levels = (2, 4, 8, 16)
    config.model.width = 128
    config.model.activation = "sigmoid"
    config.train.batch_size = 64
    config.train.eval_every = 2
    config.sweep.per_class = (500, 5000)
    config.sweep.epochs = (20, 5)
    config.quick_overrides = (("sweep.per_class", (20,)), ("sweep.epochs", (3,)), ("num_seeds", 2),
                              ("model.levels", (2, 4)), ("model.width", 32))
    return config
