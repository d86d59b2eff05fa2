"""What runs around a level's training steps: one small protocol (`Hook`), called by the level loop
(sal_jax.level_loop.run_level) at named points, and the loop's own built-in hooks.

The points, in the order the loop reaches them (every hook at a point, in the order of the list, before
the next point):

    start                   once, before the first epoch (or where a resumed level stands)
    per epoch:
      per training call:
        steps_until           the next call ends within this many steps (None: no limit)
        -- the call runs; a non-finite loss stops training here (TrainingDiverged), before any hook --
        after_call            the call's `Call`; loop.state and loop.progress are after it
        stop                  (only within an epoch: a time budget ends training after any call)
      measure               the epoch's row has its training means; add measures to it
      stop                  asked once: whether this is the last epoch (whose row is always evaluated)
      -- evaluation (every config.train.eval_every epochs, and the last) --
      after_epoch           the row is complete and in loop.progress.history
      between_epochs        (not after the last) a new train state, or None; its time is training time
    close                   always, also after an exception

Training stops when any hook's `stop` is true: `train_level` adds an `EpochLimit`, a `TimeBudget` or a
`StepBudget`.
Hook time is not training time, except `between_epochs` (a family's work between epochs is its method's
cost). What a hook keeps must be in loop.progress (e.g. `monitor`, a family's JSON record) to survive a
resume; the rest is rebuilt by `start`.

`train_level` orders its hooks: the family's epoch work, the caller's hooks, TensorBoard, the progress bar,
checkpoints last, so that a checkpoint follows what the others have written.
"""
from __future__ import annotations

import dataclasses
import math
from typing import TYPE_CHECKING, Any

import numpy as np
from tqdm.auto import tqdm

from sal_jax import parallel

if TYPE_CHECKING:
    from sal_jax.level_loop import LevelLoop
    from sal_jax.step import TrainState


@dataclasses.dataclass(frozen=True)
class Call:
    """One training call, as hooks see it after it ran."""

    steps: int
    seconds: float
    at_request: bool  # it ended where a hook's `steps_until` asked (e.g. a checkpoint is due)


class Hook:
    """Override the points you need; every default does nothing (see the module's docstring for the order)."""

    def start(self, loop: LevelLoop) -> None:
        pass

    def steps_until(self, loop: LevelLoop) -> int | None:
        return None

    def after_call(self, loop: LevelLoop, call: Call) -> None:
        pass

    def stop(self, loop: LevelLoop) -> bool:
        return False

    def measure(self, loop: LevelLoop, row: dict[str, float]) -> None:
        pass

    def after_epoch(self, loop: LevelLoop, row: dict[str, float]) -> None:
        pass

    def between_epochs(self, loop: LevelLoop) -> TrainState | None:
        return None

    def close(self, loop: LevelLoop) -> None:
        pass


@dataclasses.dataclass
class EpochLimit(Hook):
    """Training ends after `epochs` epochs."""

    epochs: int

    def stop(self, loop: LevelLoop) -> bool:
        return loop.progress.epoch >= self.epochs


@dataclasses.dataclass
class TimeBudget(Hook):
    """Training ends once `seconds` of training time are spent, judged by process 0's clock (all processes
    must stop at the same step). Calls shrink to the steps the time left allows at the last call's pace
    (the first call of a level runs one step), so a run stops within about one step of its budget. A
    budget smaller than the level's setup (tiny runs) still runs one call: every run ends with an epoch row."""

    seconds: float

    def steps_until(self, loop: LevelLoop) -> int | None:
        pace = loop.seconds_per_step
        return 1 if pace is None else max(1, math.ceil((self.seconds - loop.progress.train_time) / pace))

    def stop(self, loop: LevelLoop) -> bool:
        progress = loop.progress
        started = progress.epoch > 0 or progress.step_in_epoch > 0
        return started and parallel.agree(progress.train_time >= self.seconds)


@dataclasses.dataclass
class StepBudget(Hook):
    """Training ends after `steps` training steps of the level, counted as its state counts them (so a
    phase that continues an earlier part, or a resumed one, counts the steps before it): calls end
    exactly there, mid-epoch if need be, and that last epoch's row is evaluated like any level's last.
    The compute-matched baseline's limit (sal_jax.compute_budget.step_budget): a function of the configs,
    never of the clock, so every process and every machine stops at the same step."""

    steps: int
    done: int = 0  # steps the level has trained so far: read from the state at `start`, then counted

    def start(self, loop: LevelLoop) -> None:
        # members: the largest count (a member that failed keeps the step it stopped at)
        self.done = int(np.max(np.asarray(loop.setup.calls.host_metrics(loop.state, loop.progress)[0])))

    def steps_until(self, loop: LevelLoop) -> int | None:
        return max(1, self.steps - self.done)

    def after_call(self, loop: LevelLoop, call: Call) -> None:
        self.done += call.steps

    def stop(self, loop: LevelLoop) -> bool:
        return self.done >= self.steps


@dataclasses.dataclass
class ProgressBar(Hook):
    """A tqdm bar of epochs on stderr; none when stderr is not a terminal (a log file would collect every
    redraw). Cleared when the level ends, also on an exception."""

    total: int | None  # epochs; None under a time budget; the epochs a step budget reaches
    name: str
    bar: Any = None

    def start(self, loop: LevelLoop) -> None:
        self.bar = tqdm(total=self.total, initial=loop.progress.epoch, desc=self.name, disable=None, leave=False,
                        unit="epoch")

    def after_epoch(self, loop: LevelLoop, row: dict[str, float]) -> None:
        if "test_accuracy" in row:
            mean = lambda v: sum(v) / len(v) if isinstance(v, list) else v  # members: their mean
            self.bar.set_postfix(test_acc=f"{mean(row['test_accuracy']):.3f}", loss=f"{mean(row['train_loss']):.3f}")
        self.bar.update(1)

    def close(self, loop: LevelLoop) -> None:
        if self.bar is not None:
            self.bar.close()
