"""TensorBoard event files: one run per trained level, readable live with `tensorboard --logdir <workdir>`.

Written with tensorboardX: maintained, needs no TensorFlow (only protobuf), and writes from a background
thread, so a training call pays for building one small protobuf message. Tags:
  train/<term>       mean over each training call's steps (loss, ce, hidden, output, accuracy, and the
                     guidance weights in force, lambda_hidden / lambda_output), at the call's last step
  test/<metric>      each evaluation (accuracy, loss and its terms)
  grad_norm/<layer>  each epoch's mean gradient norm per layer
  time/train_seconds the level's training time so far, each epoch
plus the config as text and as hparams, with the level's final and best test accuracy.
"""
from __future__ import annotations

import json
from typing import Any, Mapping

import ml_collections
import numpy as np
from tensorboardX import SummaryWriter
from tensorboardX.proto.summary_pb2 import Summary
from tensorboardX.summary import hparams

EPOCH_TAGS = {"train_grad_norm/": "grad_norm/", "test_": "test/"}


class LevelLog:
    """The event file of one level's training (one TensorBoard run)."""

    def __init__(self, directory: str, purge_step: int | None = None):
        """purge_step: on resume, the first step training redoes (one past its checkpoint's): TensorBoard
        hides what an interrupted run wrote from that step on, so a resumed run's curves have no doubled
        stretch."""
        # The file is named by the second it was opened in: the start step in the name keeps a resume within
        # the same second from overwriting the first attempt's file, and sorts it after (readers go by name).
        self.writer = SummaryWriter(directory, purge_step=purge_step, flush_secs=10,
                                    filename_suffix=f".from_step_{purge_step or 0:012d}")

    def _scalars(self, step: int, values: Mapping[str, float]) -> None:
        # One event per call rather than one per tag: its cost is what the training loop pays.
        summary = Summary(value=[Summary.Value(tag=tag, simple_value=float(v)) for tag, v in values.items()])
        self.writer.file_writer.add_summary(summary, step)

    def train(self, step: int, means: Mapping[str, float]) -> None:
        """A training call's metric means (gradient norms are logged per epoch)."""
        self._scalars(step, {f"train/{k}": v for k, v in means.items() if not k.startswith("grad_norm/")})

    def epoch(self, step: int, row: Mapping[str, float]) -> None:
        """An epoch's history row (sal_jax.ladder): its test metrics, gradient norms and training time."""
        values = {"time/train_seconds": row["train_time"]}
        for key, value in row.items():
            for prefix, tag in EPOCH_TAGS.items():
                if key.startswith(prefix):
                    values[tag + key[len(prefix):]] = value
        self._scalars(step, values)

    def finish(self, step: int, config: ml_collections.ConfigDict, run_facts: Mapping[str, Any],
               results: Mapping[str, float]) -> None:
        """At the level's last `step`: the config (text and hparams, with `run_facts` such as the level)
        and the level's results as the hparams' metrics. (At its last step, not 0: a reader takes an event
        whose step goes back as a restart, and hides what was logged after that step.)"""
        self.writer.add_text("config", "    " + config.to_yaml().replace("\n", "\n    "), step)  # a code block
        hparam_values = {**flat_config(config), **run_facts}
        metrics = {f"hparam/{k}": v for k, v in results.items()}
        for summary in hparams(hparam_values, metrics):
            self.writer.file_writer.add_summary(summary, step)
        self._scalars(step, metrics)

    def flush(self) -> None:
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


def flat_config(config: ml_collections.ConfigDict) -> dict[str, bool | int | float | str]:
    """{"train.learning_rate": 0.001, ...}: what TensorBoard's hparams take (sequences as JSON text)."""
    flat = {}

    def visit(prefix: str, node: Any) -> None:
        if isinstance(node, Mapping):
            for key, value in node.items():
                visit(f"{prefix}{key}.", value)
            return
        name = prefix[:-1]
        if isinstance(node, (bool, int, float, str)):
            flat[name] = node
        elif isinstance(node, np.generic):
            flat[name] = node.item()
        else:
            flat[name] = json.dumps(node, default=str)
    visit("", config.to_dict())
    return flat
