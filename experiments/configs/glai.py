"""GLAI against the MLP of equal parameter count, alone and as SAL levels (issue #14).

One run per data set, named after the config path's colon: `digits` (8x8 digits, 64 inputs; 20 per class
and the full 1,257), `mnist` (784 inputs; 100 and 1,000 per class and the full 60,000) or `cifar10_head`
(a classifier head on the 64 features of a frozen CIFAR-10 CNN of this library; 100 and 1,000 per class
and all 25,000 of the heads' images: make the features first with experiments/frozen_features.py).

Two points (config.sweep.points), the same seeds and batches: `glai` -- a ladder of GLAI levels (1, 2)
hidden layers of 128 -- and `mlp` -- ReLU MLP levels (1, 2) whose width gives the bottom level the
parameter count of the frozen bottom GLAI level (values + structure; sal_jax.glai.matched_mlp_width: 191
for 64 inputs, 229 for 784, i.e. the paper's width reduction factor 128/191 = 0.67 and 128/229 = 0.56).
Each point trains SAL over its ladder and the bottom level plain, epoch- and time-matched (time-matched
to that point's own SAL run). GLAI's structure is frozen by the defaults of config.glai (at most 1% of
the probe gates flipping in an epoch, at the latest at half the epochs). Every epoch is evaluated (for
the time-to-accuracy curves). experiments/glai_results.py judges the claims.

Commands:
    sal-jax --config=experiments/configs/glai.py:digits --workdir=experiments/results/glai_digits
    sal-jax --config=experiments/configs/glai.py:mnist --config.data.data_dir=../shared/tensorflow_datasets \\
        --workdir=experiments/results/glai_mnist
    python experiments/frozen_features.py --data_dir=../shared/tensorflow_datasets \\
        --out=experiments/results/cifar10_features/features.npz
    sal-jax --config=experiments/configs/glai.py:cifar10_head --workdir=experiments/results/glai_cifar10_head
Run time on 2 CPU cores (5 seeds; measured 2026-11-27 at commit 1327c45, each pinned to one core while
another run used the other; library wall time): digits 49 s, mnist 522 s, cifar10_head 139 s (its
features 137 s); glai_pruning.py 8-20 s each. Results: experiments/RESULTS.md, section 7.
`--config.quick=True` (one small cell, 2 seeds) checks the pipeline in under a minute.
"""
from sal_jax import glai
from sal_jax.config import default_config

FEATURES = "experiments/results/cifar10_features/features.npz"
CELLS = {  # run -> (dataset, inputs, per_class, epochs)
    "digits": ("digits", 64, (20, 0), (100, 40)),
    "mnist": ("mnist", 784, (100, 1000, 0), (60, 20, 5)),
    "cifar10_head": ("npz", 64, (100, 1000, 0), (60, 20, 8)),
}
WIDTH, LEVELS = 128, (1, 2)


def get_config(run: str = "digits"):
    if run not in CELLS:
        raise ValueError(f"glai.py: unknown run {run!r}; choose from {list(CELLS)}")
    dataset, inputs, per_class, epochs = CELLS[run]
    config = default_config()
    config.data.name = dataset
    config.data.path = FEATURES if dataset == "npz" else ""
    config.num_seeds = 5
    config.model.levels = LEVELS
    config.train.batch_size = 64
    config.train.eval_every = 1
    config.sweep.per_class = per_class
    config.sweep.epochs = epochs
    mlp_width = glai.matched_mlp_width(inputs, WIDTH, LEVELS[-1], 10)
    config.sweep.points = ((("model.family", "glai"), ("model.width", WIDTH)),
                           (("model.family", "mlp"), ("model.width", mlp_width)))
    config.quick_overrides = (("sweep.per_class", (10,)), ("sweep.epochs", (4,)), ("num_seeds", 2),
                              ("baselines.time_matched", False))
    return config
