"""Experiment 4 — TREC (6 coarse classes) with a GRU ladder (1, 2, 3 stacked layers of 64 units).

SAL vs plain (epoch- and time-matched) and both ablations, 8 seeds, on the full training set (5,452
questions) and on 80 per class (TREC's rarest class has 86). CARER emotion: emotion_gru.py.

Command:
    sal-jax --config=experiments/configs/text_gru.py --config.data.data_dir=../shared/datasets \\
        --workdir=experiments/results/trec_gru
--config.data.data_dir: the folder holding trec/ and emotion/ (README, "Datasets"); ../shared/datasets is
this project's.
Run time on 2 CPU cores: 13 minutes for 8 seeds, every level also trained plain (799 s, the wall_time in
experiments/results/trec_gru/results.json.gz; 2026-11-27, one core, started at 7bdaf51 while later commits
landed that train these levels bit for bit alike; the other core busy: an upper bound). `--config.quick=True`: 58 s measured
2026-11-26 on a 2-core CPU shared with other jobs (an upper bound).
"""
from sal_jax.config import default_config


def get_config():
    config = default_config()
    config.data.name = "trec"
    config.data.max_len = 32
    config.num_seeds = 8
    config.ablations = True
    config.baselines.every_level = True  # each level also trained plain: RESULTS.md's "which level is best"
    config.model.family = "rnn"
    config.model.levels = (1, 2, 3)
    config.model.hidden = 64
    config.model.embed_dim = 64
    config.model.cell = "gru"
    config.train.batch_size = 64
    config.train.eval_every = 2
    config.sweep.per_class = (80, 0)   # TREC's rarest class (ABBR) has 86 training questions
    config.sweep.epochs = (30, 4)
    config.quick_overrides = (("sweep.per_class", (20,)), ("sweep.epochs", (2,)), ("num_seeds", 2),
                              ("model.levels", (1, 2)), ("model.hidden", 16), ("data.max_len", 16))
    return config
