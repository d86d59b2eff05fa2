"""SAL vs plain training on scikit-learn's digits (embedded, no download): a deep tanh MLP ladder.

Command (the README's main job):
    sal-jax --config=experiments/configs/digits_mlp.py --workdir=runs/digits_mlp
Run time on 2 CPU cores (3 seeds, the SAL ladder and both plain baselines each; medians of 5 runs,
2026-12-03, a 2-core Intel Xeon, `python benchmarks/main_job_time.py`): 28.7 s with a warm compilation
cache, 35.9 s cold.
"""
from sal_jax.config import default_config


def get_config():
    config = default_config()
    config.data.name = "digits"
    config.num_seeds = 3
    config.model.family = "mlp"
    config.model.levels = (2, 4, 8, 16)
    config.model.width = 64
    config.model.activation = "tanh"
    config.train.epochs = 30
    config.train.batch_size = 64
    return config
