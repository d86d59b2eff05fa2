"""The level loop's hooks: the documented order of their points, a user's own metric, and the built-in
limits."""
import jax
import numpy as np
import optax

from sal_jax.hooks import Hook, StepBudget, TimeBudget
from sal_jax.ladder import train_ladder
from sal_jax.level_loop import train_level
from sal_jax.models import make_ladder


class Recorder(Hook):
    """Writes down every point it is called at, with the epoch and step in the epoch it sees."""

    def __init__(self):
        self.points = []

    def _note(self, name, loop):
        self.points.append((name, loop.progress.epoch, loop.progress.step_in_epoch))

    def start(self, loop):
        self._note("start", loop)

    def steps_until(self, loop):
        self._note("steps_until", loop)
        return 2  # calls of at most 2 steps: 4 steps an epoch are two calls

    def after_call(self, loop, call):
        self._note(f"after_call {call.steps} {call.at_request}", loop)

    def stop(self, loop):
        self._note("stop", loop)
        return False

    def measure(self, loop, row):
        self._note("measure", loop)

    def after_epoch(self, loop, row):
        self._note("after_epoch", loop)

    def between_epochs(self, loop):
        self._note("between_epochs", loop)

    def close(self, loop):
        self._note("close", loop)


def test_hooks_are_called_at_their_points_in_the_documented_order(data, config):
    config.train.epochs, config.train.steps_per_call = 2, 0  # 0: calls sized by the loop, 1 step first
    recorder = Recorder()
    train_level(make_ladder(config.model, data.num_classes)[0], data, config, level=1, hooks=[recorder])
    def call(epoch, before, steps):  # at_request: the call ended where steps_until asked
        return [("steps_until", epoch, before), (f"after_call {steps} {steps == 2}", epoch, before + steps),
                ("stop", epoch, before + steps)]
    # 150 examples at batch 32: 4 steps an epoch; the first call of a level runs 1 step, then 2 (asked), then
    # the epoch's last one
    first = [*call(0, 0, 1), *call(0, 1, 2), *call(0, 3, 1)]
    second = [*call(1, 0, 2), *call(1, 2, 2)]
    assert recorder.points == [("start", 0, 0), ("stop", 0, 0), *first,
                               ("measure", 1, 0), ("stop", 1, 0), ("after_epoch", 1, 0), ("between_epochs", 1, 0),
                               *second,
                               ("measure", 2, 0), ("stop", 2, 0), ("after_epoch", 2, 0), ("close", 2, 0)]


class WeightNorm(Hook):
    """A metric of one's own in every epoch's history row: the global L2 norm of the level's weights."""

    def measure(self, loop, row):
        row["weight_norm"] = float(optax.tree.norm(loop.state.params["model"]))


def test_a_users_hook_adds_a_metric_to_every_row_and_changes_nothing_else(data, config):
    levels = make_ladder(config.model, data.num_classes)
    plain = train_ladder(levels, data, config)
    measured = train_ladder(levels, data, config, hooks=[WeightNorm()])
    for with_norm, without in zip(measured.sal + [measured.plain_epoch_matched], plain.sal + [plain.plain_epoch_matched]):
        assert all("weight_norm" in row for row in with_norm.history)
        # the last row's norm is that of the level's final weights
        final = float(optax.tree.norm(with_norm.variables["params"]))
        np.testing.assert_allclose(with_norm.history[-1]["weight_norm"], final, rtol=1e-6)
        rows = [{k: v for k, v in row.items() if k not in ("weight_norm", "train_time")} for row in with_norm.history]
        assert rows == [{k: v for k, v in row.items() if k != "train_time"} for row in without.history]
        jax.tree.map(np.testing.assert_array_equal, with_norm.variables, without.variables)


def test_a_hook_that_says_stop_ends_training_after_the_epoch_and_its_last_row_is_evaluated(data, config):
    config.train.epochs, config.train.eval_every = 5, 10

    class AfterTwo(Hook):
        def stop(self, loop):
            return loop.progress.epoch >= 2

    run = train_level(make_ladder(config.model, data.num_classes)[0], data, config, level=1, hooks=[AfterTwo()])
    assert len(run.history) == 2 and "test_accuracy" in run.history[-1] and "test_accuracy" not in run.history[0]


def test_a_time_budget_asks_for_one_step_until_it_knows_the_pace():
    class Loop:
        seconds_per_step = None

        class progress:
            train_time = 0.25

    budget = TimeBudget(1.0)
    assert budget.steps_until(Loop) == 1
    Loop.seconds_per_step = 0.1
    assert budget.steps_until(Loop) == 8  # ceil(0.75 / 0.1)
    Loop.progress.train_time = 1.5
    assert budget.steps_until(Loop) == 1  # over budget: the loop still runs whole steps


def test_a_step_budget_ends_the_level_at_its_step_and_counts_from_the_states_step(data, config):
    """StepBudget(5) with 4 steps an epoch: the second epoch stops after its first step, and its row (the
    last) is evaluated; a resumed or continued level counts the steps its state has done."""
    config.train.epochs, config.train.eval_every = 5, 10
    budget = StepBudget(5)
    run = train_level(make_ladder(config.model, data.num_classes)[0], data, config, level=1, hooks=[budget])
    assert run.steps == budget.done == 5 and len(run.history) == 2 and "test_accuracy" in run.history[-1]

    class Loop:
        class state:
            step = jax.numpy.asarray([7, 3])  # members: one that failed stopped at step 3

        class setup:
            class calls:  # the steps as the level's calls bring them to the host
                host_metrics = staticmethod(lambda state, progress: (jax.device_get(state.step), None))
        progress = None

    budget = StepBudget(9)
    budget.start(Loop)
    assert (budget.done, budget.steps_until(Loop), budget.stop(Loop)) == (7, 2, False)
