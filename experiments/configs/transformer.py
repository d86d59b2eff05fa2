"""Transformer ladders (issue #16): SAL vs plain training (epoch- and time-matched) with encoder levels of 1, 2
and 4 blocks (dim 64, 4 heads, MLP 2 x dim, pre-LN, mean pooling; sal_jax/models/transformer.py).

One run per setting, named after the config path's colon:

- `trec`: TREC (6 classes), token ids padded to 32, 80 questions per class and the full 5,452;
- `emotion`: CARER (6 classes) at 80 and 300 tweets per class;
- `deep`: TREC (80 per class) with ladders of 3, 6 and 12 blocks, post-LN (LN(h + f(h)), the original Transformer)
  and pre-LN (config.sweep.grid), Adam at 1e-3 without warm-up (the trainer has none): the regime in
  which deep post-LN stacks are known to train unstably;
- `cifar10`: a ViT (patches of 4 x 4, so 64 tokens) on CIFAR-10, 100 images per class.

3 seeds each, SAL with its hidden-only and output-only ablations (the same seeds, initial weights and
batches for SAL, its ablations and its baselines); results.md opens
with the paired table (SAL's bottom minus each baseline per seed, 95% CI, d_z, Holm-adjusted p, verdict).

Commands:
    sal-jax --config=experiments/configs/transformer.py:trec --config.data.data_dir=../shared/datasets \\
        --workdir=experiments/results/transformer_trec
    (emotion and deep alike, --workdir=experiments/results/transformer_<run>)
    sal-jax --config=experiments/configs/transformer.py:cifar10 --config.data.data_dir=../shared/tensorflow_datasets \\
        --workdir=experiments/results/transformer_cifar10
Run time on 2 CPU cores (2026-11-27, commit eddc0ac, each on one core while the other ran the other):
deep 1751 s, cifar10 1810 s. trec and emotion ran on one NVIDIA H200 (jax 0.11.2 CUDA; the three text
runs at a time on the one GPU): trec 204 s, emotion 183 s (library wall times; deep was cut off there by
the call's time limit and rerun here). `--config.quick=True` (one small cell, 2 seeds) checks the pipeline in
about a minute on a CPU.
"""
from sal_jax.config import default_config

RUNS = {  # run -> (dataset, family, levels, per_class, epochs, batch)
    "trec": ("trec", "transformer", (1, 2, 4), (80, 0), (30, 10), 64),
    "emotion": ("emotion", "transformer", (1, 2, 4), (80, 300), (30, 10), 64),
    "deep": ("trec", "transformer", (3, 6, 12), (80,), (30,), 64),
    "cifar10": ("cifar10", "vit", (1, 2, 4), (100,), (20,), 64),
}


def get_config(run: str = "trec"):
    if run not in RUNS:
        raise ValueError(f"transformer.py: unknown run {run!r}; choose from {list(RUNS)}")
    dataset, family, levels, per_class, epochs, batch = RUNS[run]
    config = default_config()
    config.data.name = dataset
    config.data.max_len = 32
    config.num_seeds = 3
    config.ablations = True
    config.model.family = family
    config.model.levels = levels
    config.model.dim, config.model.heads, config.model.mlp_ratio = 64, 4, 2
    config.model.patch = 4
    config.train.batch_size = batch
    config.train.eval_every = 2
    config.sweep.per_class = per_class
    config.sweep.epochs = epochs
    if run == "deep":
        config.sweep.grid = (("model.norm", ("post", "pre")),)
    config.quick_overrides = (("sweep.per_class", (10,)), ("sweep.epochs", (2,)), ("num_seeds", 2),
                              ("model.levels", (1, 2)), ("model.dim", 16), ("sweep.grid", ()),
                              ("baselines.time_matched", False), ("train.batch_size", 16))
    return config
