"""Sensitivity study (issue #13): SAL against plain training as each guidance setting moves off its default.

One cell per run, named after the config path's colon: `mnist_scarce` (MNIST, MLP ladder (1, 2, 4, 8) x
128 ReLU, 100 examples per class, 30 epochs), `deep_tanh` (MNIST, MLP ladder (2, 4, 8, 16) x 128 tanh,
500 per class, 20 epochs) or `cifar10` (CIFAR-10, CNN ladder (1, 2, 3) blocks with BatchNorm, 500 per
class, 10 epochs). The points (config.sweep.points) move one setting at a time from the default: λ_h
0, 0.1, 10 (0: output-only); λ_o 0, 5 (0: hidden-only); T 1, 8; the linear-decay schedule; the cosine
distance; the hidden term averaged over matched layers; teacher features standardised per unit and per
layer; two other ladder shapes. Every point trains SAL and both plain baselines with the same 8 seeds;
results.md opens with the paired table (SAL's bottom minus each baseline per seed, 95% CI, d_z, p
Holm-adjusted over the table, verdict).

Command:
    sal-jax --config=experiments/configs/sensitivity.py:mnist_scarce --config.data.data_dir=../shared/tensorflow_datasets --workdir=experiments/results/sensitivity_mnist_scarce
Run time on 2 CPU cores (15 points x 8 seeds, SAL and both baselines each; measured 2026-11-27 on a 2-core
AMD EPYC): mnist_scarce 8.3 min, deep_tanh 27 min (library wall time); cifar10 not run yet (expect
hours: ~20 ms CNN steps). `--config.quick=True` (3 points, 2 seeds, a small ladder) checks the pipeline
in about a minute. Results: experiments/RESULTS.md, sections 6a and 6b.
"""
from sal_jax.config import default_config

CELLS = {  # cell -> (dataset, family, levels, activation, per_class, epochs, other ladder shapes)
    "mnist_scarce": ("mnist", "mlp", (1, 2, 4, 8), "relu", 100, 30, ((2, 8), (1, 4, 16))),
    "deep_tanh": ("mnist", "mlp", (2, 4, 8, 16), "tanh", 500, 20, ((4, 16), (2, 4, 8, 16, 32))),
    "cifar10": ("cifar10", "cnn", (1, 2, 3), "relu", 500, 10, ((2, 3), (1, 3))),
}


def get_config(cell: str = "mnist_scarce"):
    if cell not in CELLS:
        raise ValueError(f"sensitivity.py: unknown cell {cell!r}; choose from {list(CELLS)}")
    dataset, family, levels, activation, per_class, epochs, shapes = CELLS[cell]
    config = default_config()
    config.data.name = dataset
    config.num_seeds = 8
    config.ablations = False  # the λ_h = 0 and λ_o = 0 points are the ablations
    config.model.family = family
    config.model.levels = levels
    config.model.width = 128
    config.model.activation = activation
    config.model.channels = (16, 32, 64)
    config.train.batch_size = 64
    config.train.eval_every = 5
    config.sweep.per_class = (per_class,)
    config.sweep.epochs = (epochs,)
    one_at_a_time = [("guidance.hidden_weight", v) for v in (0.0, 0.1, 10.0)] + \
        [("guidance.output_weight", v) for v in (0.0, 5.0)] + \
        [("guidance.temperature", v) for v in (1.0, 8.0)] + \
        [("guidance.schedule", "linear_decay"), ("guidance.distance", "cosine"),
         ("guidance.layer_reduction", "mean"), ("guidance.feature_norm", "unit_rms"),
         ("guidance.feature_norm", "layer_rms")] + [("model.levels", shape) for shape in shapes]
    config.sweep.points = ((),) + tuple(((key, value),) for key, value in one_at_a_time)
    config.quick_overrides = (("sweep.per_class", (10,)), ("sweep.epochs", (2,)), ("num_seeds", 2),
                              ("model.levels", levels[:2]), ("model.width", 32), ("model.channels", (8, 16)),
                              ("sweep.points", ((), (("guidance.hidden_weight", 0.0),),
                                                (("guidance.feature_norm", "unit_rms"),))))
    return config
