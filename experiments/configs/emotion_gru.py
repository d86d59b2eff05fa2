"""Experiment 4b — CARER emotion (6 classes) with the GRU ladder of text_gru.py (1, 2, 3 layers of 64).

SAL vs plain (epoch- and time-matched) and both ablations, 8 seeds, at 80 and 300 training tweets per
class (the full 16,000 is not part of the sweep); test on all 2,000 test tweets.

Command:
    sal-jax --config=experiments/configs/emotion_gru.py --config.data.data_dir=../shared/datasets \\
        --workdir=experiments/results/emotion_gru
--config.data.data_dir: the folder holding trec/ and emotion/ (README, "Datasets"); ../shared/datasets is
this project's.
Run time on 2 CPU cores: 29 minutes for 8 seeds, every level also trained plain (1711 s, the wall_time in
experiments/results/emotion_gru/results.json.gz; 2026-11-27, code between e168278 and 24b53c7, which train
these levels bit for bit alike; one core, the other busy: an upper bound). `--config.quick=True`: 48 s
measured 2026-11-26 on a 2-core CPU shared with other jobs (an upper bound).
"""
import os
import sys

sys.path.insert(0, os.path.dirname(__file__))
import text_gru  # noqa: E402


def get_config():
    config = text_gru.get_config()
    config.data.name = "emotion"
    config.sweep.per_class = (80, 300)
    config.sweep.epochs = (30, 10)
    return config
