"""Sparse evolutionary MLPs (SET / NPSET) against dense ones, with the referee's controls (issue #15).

One run per data set, named after the config path's colon: `breast_cancer` and `wine` (scikit-learn's,
standardised, stratified 70/30 split fixed by config.data.subset_seed), `digits` (8x8 digits, 20 per
class and the full 1,257) and `mnist` (100 per class). Six points (config.sweep.points), the same seeds
and batches, each a ladder of 1 and 2 hidden layers (SAL over it, and its bottom level plain, epoch- and
time-matched):

- `dense`: the dense ReLU MLP at full width (`WIDTHS`);
- `dense_matched`: a dense MLP whose width gives about the parameters NPSET's bottom level ends with
  (sal_jax.sparse.expected_live_params; the tables report every level's actual count);
- `fixed`: sparse layers at the same Erdős–Rényi density (ε = 20), never rewired (ζ = 0);
- `set`: SET, ζ = 0.3 of each layer's weights removed and regrown after every epoch;
- `npset`: SET with half of each hidden layer's units pruned over the first half of the epochs;
- `npset_fixed`: the same neuron pruning with rewiring off (ζ = 0).

The density runs (`density_<data set>`, e.g. `sparse.py:density_wine`) ask whether a SAL ladder can grow in
density instead of depth: three points, the same seeds and batches,

- `dense`: SAL over the dense ladder of 1 and 2 hidden layers (as above);
- `npset`: SAL over NPSET levels of 1 and 2 hidden layers (as above: a depth ladder);
- `npset_density`: SAL over three NPSET levels of 2 hidden layers each, at ε = 2, 5 and 20
  (`DENSITIES`, config.model.epsilons): the sparsest level learns first and guides the next denser one.
  Its bottom level trained plain is NPSET alone (epoch- and time-matched); every level is also trained
  plain (config.baselines.every_level) to show which density is best.

experiments/sparse_results.py judges the claims (sparse > dense at full size and at matched parameters,
rewiring matters, half the neurons prunable without loss, SAL over sparse levels) and draws the
learning curves (train and test accuracy per epoch).

Commands:
    sal-jax --config=experiments/configs/sparse.py:breast_cancer --workdir=experiments/results/sparse_breast_cancer
    sal-jax --config=experiments/configs/sparse.py:wine --workdir=experiments/results/sparse_wine
    sal-jax --config=experiments/configs/sparse.py:digits --workdir=experiments/results/sparse_digits
    sal-jax --config=experiments/configs/sparse.py:mnist --config.data.data_dir=../shared/tensorflow_datasets \\
        --workdir=experiments/results/sparse_mnist
    sal-jax --config=experiments/configs/sparse.py:density_wine --workdir=experiments/results/sparse_density_wine
    (and density_breast_cancer, density_digits, density_mnist alike: --workdir=experiments/results/sparse_<run>)
Run time on 2 CPU cores (5 seeds, 6 points; measured 2026-11-27 at commit 24b53c7, on one core while the
other ran experiments; library wall time): wine 260 s, breast_cancer 339 s, digits 651 s, mnist 1297 s.
The density runs (5 seeds, 3 points, every level also trained plain; 2026-11-27 at commit 4e23118, one core
while the other ran experiments): density_wine 200 s, density_breast_cancer 439 s, density_digits 746 s,
density_mnist 769 s.
Results: experiments/RESULTS.md, section 8. `--config.quick=True` (one small cell, 2 seeds) checks the
pipeline in about a minute.
"""
from sal_jax.config import default_config
from sal_jax.models.mlp import width_for_params
from sal_jax.sparse import expected_live_params

CELLS = {  # run -> (dataset, inputs, classes, width, batch, per_class, epochs)
    "breast_cancer": ("breast_cancer", 30, 2, 256, 16, (0,), (60,)),
    "wine": ("wine", 13, 3, 256, 16, (0,), (100,)),
    "digits": ("digits", 64, 10, 256, 32, (20, 0), (100, 40)),
    "mnist": ("mnist", 784, 10, 256, 64, (100,), (60,)),
}
LEVELS, EPSILON, PRUNE = (1, 2), 20.0, 0.5
DENSITY_LEVELS, DENSITIES = (2, 2, 2), (2.0, 5.0, 20.0)  # the density ladder: one ε per level, sparsest on top


def points(inputs: int, classes: int, width: int) -> tuple:
    matched = width_for_params(expected_live_params(inputs, width, LEVELS[-1], classes, EPSILON, PRUNE), inputs,
                               LEVELS[-1], classes)
    sparse, fixed, pruned = ("model.family", "set_mlp"), ("sparse.zeta", 0.0), ("sparse.prune_fraction", PRUNE)
    return (((("model.family", "mlp"),)), (("model.family", "mlp"), ("model.width", matched)), (sparse, fixed),
            (sparse,), (sparse, pruned), (sparse, fixed, pruned))


POINT_NAMES = ("dense", "dense_matched", "fixed", "set", "npset", "npset_fixed")
DENSITY = "density_"  # the prefix of a density run
DENSITY_POINT_NAMES = ("dense", "npset", "npset_density")


def density_points() -> tuple:
    sparse, pruned = ("model.family", "set_mlp"), ("sparse.prune_fraction", PRUNE)
    return ((("model.family", "mlp"),), (sparse, pruned),
            (sparse, pruned, ("model.levels", DENSITY_LEVELS), ("model.epsilons", DENSITIES)))


def point_names(points) -> tuple[str, ...]:
    """The names of a run's sweep points (config.sweep.points, as in its results.json), in their order."""
    density = any("model.epsilons" in dict(map(tuple, point)) for point in points)
    return DENSITY_POINT_NAMES if density else POINT_NAMES


def get_config(run: str = "wine"):
    density = run.startswith(DENSITY)
    if run.removeprefix(DENSITY) not in CELLS:
        raise ValueError(f"sparse.py: unknown run {run!r}; choose from {list(CELLS)}, each also with the prefix "
                         f"{DENSITY!r}")
    dataset, inputs, classes, width, batch, per_class, epochs = CELLS[run.removeprefix(DENSITY)]
    config = default_config()
    config.data.name = dataset
    config.num_seeds = 5
    config.model.levels = LEVELS
    config.model.width = width
    config.model.epsilon = EPSILON
    config.train.batch_size = batch
    config.train.eval_every = 1
    config.sweep.per_class = per_class
    config.sweep.epochs = epochs
    config.sweep.points = density_points() if density else points(inputs, classes, width)
    config.baselines.every_level = density  # which density is best
    config.quick_overrides = (("sweep.per_class", per_class[:1]), ("sweep.epochs", (3,)), ("num_seeds", 2),
                              ("baselines.time_matched", False), ("model.width", 32),
                              ("sweep.points", density_points() if density else points(inputs, classes, 32)))
    return config
