"""TensorBoard event files: one run per trained level, readable live with `tensorboard --logdir <workdir>`.

Written with tensorboardX's parts: maintained, and needs no TensorFlow (only protobuf). Its event writer
(`EventsWriter`) is used directly, synchronously: the `SummaryWriter` hands each event to a background
process queue, ~50 us an event, which calls of ~1 ms (small models, short epochs) would notice; a direct
buffered write takes a few microseconds. Flushed every FLUSH_SECONDS (at an epoch's end), before each
checkpoint and at the end. Tags:
  train/<term>       mean over each training call's steps (loss, ce, hidden, output, accuracy, and the
                     guidance weights in force, lambda_hidden / lambda_output), at the call's last step
  test/<metric>      each evaluation (accuracy, loss and its terms)
  grad_norm/<layer>  each epoch's mean gradient norm per layer
  time/train_seconds the level's training time so far, each epoch
  diagnostics/<name> with config.guidance.gradient_diagnostics, each epoch: each loss term's gradient norm
                     and the cosine between the CE's and the guidance's gradients
plus the config as text (a table of its dotted keys and values) and as hparams, with the level's final
and best test accuracy.
"""
from __future__ import annotations

import contextlib
import json
import os
import sys
import time
from typing import TYPE_CHECKING, Any, Iterator, Mapping, Sequence

import ml_collections
import numpy as np


@contextlib.contextmanager
def _torch_unimportable() -> Iterator[None]:
    """tensorboardX's package imports PyTorch whenever it is installed (to accept torch tensors, which
    this module never logs): seconds of start-up on a machine that has it, as most GPU machines do. While
    tensorboardX loads, `import torch` fails as if it were absent -- unless the program has already
    imported it -- and works again afterwards."""
    if "torch" in sys.modules:
        yield
        return
    sys.modules["torch"] = None  # type: ignore[assignment]  # an import of it raises ImportError
    try:
        yield
    finally:
        if sys.modules.get("torch", 0) is None:
            del sys.modules["torch"]


with _torch_unimportable():
    from tensorboardX.event_file_writer import EventsWriter
    from tensorboardX.proto.event_pb2 import Event, SessionLog
    from tensorboardX.proto.summary_pb2 import Summary
    from tensorboardX.summary import hparams, text

from sal_jax.config import flat_config  # noqa: E402
from sal_jax.hooks import Call, Hook  # noqa: E402

if TYPE_CHECKING:
    from sal_jax.level_loop import LevelLoop
    from sal_jax.records import LevelRun

EPOCH_TAGS = {"train_grad_norm/": "grad_norm/", "test_": "test/", "diag_": "diagnostics/"}
FLUSH_SECONDS = 10.0  # how stale a live view may get


class LevelLog:
    """The event file of one level's training (one TensorBoard run)."""

    def __init__(self, directory: str, purge_step: int | None = None):
        """purge_step: on resume, the first step training redoes (one past its checkpoint's): TensorBoard
        hides what an interrupted run wrote from that step on, so a resumed run's curves have no doubled
        stretch."""
        os.makedirs(directory, exist_ok=True)
        # The file is named by the second it was opened in: the start step in the name keeps a resume within
        # the same second from overwriting the first attempt's file, and sorts it after (readers go by name).
        self.writer = EventsWriter(os.path.join(directory, "events"), f".from_step_{purge_step or 0:012d}")
        if purge_step is not None:  # what TensorBoard reads as a restart at purge_step (as SummaryWriter writes it)
            self.writer.write_event(Event(wall_time=time.time(), step=purge_step,
                                          session_log=SessionLog(status=SessionLog.START)))
        self.flushed = time.monotonic()
        self.pending: tuple[int, dict[str, float]] | None = None  # the last call's means, not yet written

    def _write(self, step: int, summary: Summary) -> None:
        self.writer.write_event(Event(wall_time=time.time(), step=step, summary=summary))

    def _scalars(self, step: int, values: Mapping[str, float]) -> None:
        # One event per step rather than one per tag: its cost is what the training loop pays.
        self._write(step, Summary(value=[Summary.Value(tag=tag, simple_value=float(v)) for tag, v in values.items()]))

    def _write_pending(self) -> None:
        if self.pending is not None:
            self._scalars(*self.pending)
            self.pending = None

    def train(self, step: int, means: Mapping[str, float]) -> None:
        """A training call's metric means (gradient norms are logged per epoch). Held until the next call
        or epoch: an epoch's last call shares its step, and so its event, with the epoch's values."""
        self._write_pending()
        self.pending = (step, {f"train/{k}": v for k, v in means.items() if not k.startswith("grad_norm/")})

    def epoch(self, step: int, row: Mapping[str, float]) -> None:
        """An epoch's history row (sal_jax.ladder): its test metrics, gradient norms and training time."""
        values = {"time/train_seconds": row["train_time"]}
        for key, value in row.items():
            for prefix, tag in EPOCH_TAGS.items():
                if key.startswith(prefix):
                    values[tag + key[len(prefix):]] = value
        if self.pending is not None and self.pending[0] == step:
            values.update(self.pending[1])
            self.pending = None
        self._write_pending()
        self._scalars(step, values)
        if time.monotonic() - self.flushed > FLUSH_SECONDS:
            self.flush()

    def finish(self, step: int, config: ml_collections.ConfigDict, run_facts: Mapping[str, Any],
               results: Mapping[str, float]) -> None:
        """At the level's last `step`: the config (text and hparams, with `run_facts` such as the level)
        and the level's results as the hparams' metrics. (At its last step, not 0: a reader takes an event
        whose step goes back as a restart, and hides what was logged after that step.)"""
        self._write_pending()
        self._write(step, text("config", config_table(config)))
        values = {**hparam_values(config), **run_facts}
        metrics = {f"hparam/{k}": v for k, v in results.items()}
        for summary in hparams(values, metrics):
            self._write(step, summary)
        self._scalars(step, metrics)

    def flush(self) -> None:
        self._write_pending()
        self.writer.flush()
        self.flushed = time.monotonic()

    def close(self) -> None:
        self._write_pending()
        self.writer.close()


class TensorBoardHook(Hook):
    """A level's metrics to its LevelLogs as it trains (sal_jax.hooks): each call's means over its steps,
    each epoch's row; one log per training (members: one per member, each given its member's values).
    Flushed when a call ends where a hook asked (a checkpoint is due), so that a checkpoint follows the
    events it covers and a SIGKILL after it loses none."""

    def __init__(self, logs: Sequence[LevelLog]):
        self.logs = list(logs)
        self.logged: dict[str, Any] | None = None  # the epoch's metric sums at the last call logged

    def start(self, loop: LevelLoop) -> None:
        # a level resumed inside an epoch: its sums so far were logged before
        self.logged = loop.setup.calls.host_metrics(loop.state, loop.progress)[1]

    def after_call(self, loop: LevelLoop, call: Call) -> None:
        step, sums = loop.setup.calls.host_metrics(loop.state, loop.progress)
        steps, logged = _each(step), self.logged
        for i, log in enumerate(self.logs):
            log.train(steps[i], {k: (_each(v)[i] - (0.0 if logged is None else _each(logged[k])[i])) / call.steps
                                 for k, v in sums.items()})
            if call.at_request:
                log.flush()
        self.logged = sums

    def after_epoch(self, loop: LevelLoop, row: dict[str, Any]) -> None:
        steps = _each(loop.setup.calls.host_metrics(loop.state, loop.progress)[0])
        for i, log in enumerate(self.logs):
            log.epoch(steps[i], {k: v[i] if isinstance(v, list) else v for k, v in row.items()})
        self.logged = None

    def finish(self, run: LevelRun, config: ml_collections.ConfigDict, run_facts: Mapping[str, Any]) -> None:
        """At the end of the phase: each log's config and results (`LevelLog.finish`)."""
        from sal_jax.member_loop import member_run  # it imports the level loop, which imports this module's users
        runs = [member_run(run, i) for i in range(len(self.logs))] if isinstance(run.steps, list) else [run]
        for log, one in zip(self.logs, runs):
            log.finish(one.steps, config, run_facts, {"final_test_accuracy": one.final_test_accuracy,
                                                      "best_test_accuracy": one.best_test_accuracy})


def _each(value: Any) -> list:
    """A value per training: a number's one (one training), an array's per member (members)."""
    return [x.item() if hasattr(x, "item") else x for x in np.atleast_1d(value)]


def config_table(config: ml_collections.ConfigDict) -> str:
    """The config as a markdown table of its dotted keys and values, which TensorBoard's text tab renders
    as a table (the config's YAML would show ml_collections' internals: `!!python/object` tags, `_locked`)."""
    values = {key: str(value).replace("|", "\\|")  # "|" would end a cell
              for key, value in hparam_values(config).items()}
    return "\n".join(["| key | value |", "| --- | --- |", *(f"| {key} | {value} |" for key, value in values.items())])


def hparam_values(config: ml_collections.ConfigDict) -> dict[str, bool | int | float | str]:
    """{"train.learning_rate": 0.001, ...}: what TensorBoard's hparams take (sequences as JSON text)."""
    return {key: value if isinstance(value, (bool, int, float, str)) else json.dumps(value, default=str)
            for key, value in flat_config(config).items()}
