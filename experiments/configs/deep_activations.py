"""Deep networks (issue #13): where plain training fails, and what SAL and its ablations do there.

MNIST, 500 examples per class, MLP ladders of 128 units without normalisation ending at 16 hidden layers
((2, 4, 8, 16)) or 32 ((4, 8, 16, 32)), each with sigmoid, tanh and ReLU (config.sweep.grid: 6 points).
Every point trains SAL, its hidden-only and output-only ablations and both plain baselines with the
same 8 seeds, 20 epochs per level; results.md opens with the paired table (SAL's bottom minus each
baseline per seed, 95% CI, d_z, Holm-adjusted p, verdict) and gives per point which level is best.

Command:
    sal-jax --config=experiments/configs/deep_activations.py --config.data.data_dir=../shared/tensorflow_datasets --workdir=experiments/results/deep_activations
Run time on 2 CPU cores: run in two parts (experiments/RESULTS.md 5a and 5b, their commands there), the
wall_times in experiments/results/deep_activations_16 and _32: 16 layers, 2025 s with every level also
trained plain (2026-11-27, started at commit 04c6aff, on one core while the other ran experiments: an
upper bound); 32 layers, 1696 s with every level also trained plain (2026-11-27, started at commit ba909eb,
on one core while the other ran experiments: an upper bound). `--config.quick=True` checks the pipeline in about a minute.
"""
from sal_jax.config import default_config


def get_config():
    config = default_config()
    config.data.name = "mnist"
    config.num_seeds = 8
    config.ablations = True
    config.baselines.every_level = True  # each level also trained plain: RESULTS.md's "which level is best"
    config.model.family = "mlp"
    config.model.width = 128
    config.train.batch_size = 64
    config.train.eval_every = 2
    config.sweep.per_class = (500,)
    config.sweep.epochs = (20,)
    config.sweep.grid = (("model.activation", ("sigmoid", "tanh", "relu")),
                         ("model.levels", ((2, 4, 8, 16), (4, 8, 16, 32))))
    config.quick_overrides = (("sweep.per_class", (10,)), ("sweep.epochs", (2,)), ("num_seeds", 2),
                              ("model.width", 16), ("ablations", False),
                              ("sweep.grid", (("model.activation", ("sigmoid", "relu")),
                                              ("model.levels", ((2, 4),)))))
    return config
