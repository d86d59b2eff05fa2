"""What watching a run costs (issue #12): the non-finite check in the training loop, and TensorBoard events.

    python benchmarks/monitoring_cost.py [--families=main_job,mlp_tiny,mlp_main,mlp] [--repeats=5]

Non-finite check: one compiled training call of an epoch's 64 steps (the benchmark's student, plain),
with the check and with it switched off (`chunks.finite` always true), alternated 60 times; median per
step. Both programs are otherwise the same.

TensorBoard: the family's guided student level (teacher cached) trains with and without events
(sal_jax.summaries.LevelLog into a temporary folder), interleaved; reported: the median wall time of the
level's loop after compilation (training calls, logging, its one evaluation), and the time spent inside
the log's methods plus the transfer of the sums it needs, as a share of the training time. "main_job" is
the digits main job's bottom level (16x64 tanh, batch 64, 19 steps an epoch): its calls end at every
epoch, so it pays the per-call and per-epoch costs most often.
"""
from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path

from absl import app, flags

sys.path.insert(0, str(Path(__file__).resolve().parent))
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from common import bench_config, dataset, setups  # noqa: E402

from sal_jax import chunks, parallel  # noqa: E402
from sal_jax.data import load_dataset  # noqa: E402
from sal_jax.level_loop import LevelPlan, initial_state, train_level  # noqa: E402
from sal_jax.models import MLP  # noqa: E402
from sal_jax.step import train_step_fn  # noqa: E402
from sal_jax.summaries import LevelLog, TensorBoardHook  # noqa: E402

_FAMILIES = flags.DEFINE_list("families", ["main_job", "mlp_tiny", "mlp_main", "mlp"], "What to measure.")
_REPEATS = flags.DEFINE_integer("repeats", 5, "Interleaved repetitions of the TensorBoard runs (medians).")
CALLS = 60


def family(name: str):
    """(student, teacher, data, config) of a family: 64 steps an epoch (main_job: digits, 19)."""
    if name == "main_job":
        config = bench_config(setups()["mlp_main"])
        config.data.name = "digits"
        return MLP(16, 64, 10, "tanh"), MLP(8, 64, 10, "tanh"), load_dataset(config.data, "mlp"), config
    setup = setups()[name]
    return setup.student, setup.teacher, dataset(setup, setup.batch * 64), bench_config(setup)


def check_cost(name: str) -> tuple[float, float]:
    """Seconds per step of a call of an epoch's steps: (checked, unchecked)."""
    student, _, data, config = family(name)
    steps = len(data.x_train) // config.train.batch_size
    mesh, check, calls = parallel.make_mesh(config.parallel), chunks.finite, {}
    for variant in ("checked", "unchecked"):
        chunks.finite = check if variant == "checked" else (lambda metrics: jnp.bool_(True))  # read when traced
        _, tx, state = initial_state(LevelPlan(student, level=1), data, config)
        shardings = parallel.step_shardings(mesh, state, None)
        state = jax.device_put(state, shardings.state, may_alias=False)
        split = parallel.SplitBatches({"x": data.x_train, "y": data.y_train}, config.train.batch_size,
                                      shardings.batch, 1024.0, num_batches=steps)
        step = train_step_fn(student, tx)
        zeros = chunks.zero_sums(chunks.trace_step(step, split, state, None)[1][1], shardings)
        plan, offset = split.plan(np.arange(len(data.x_train)), 0, steps)
        calls[variant] = [chunks.make_train_chunk(step, split, shardings), state, split.source, plan, offset, zeros]
    chunks.finite = check
    times = {k: [] for k in calls}
    for _ in range(CALLS):
        for variant, args in calls.items():
            chunk, state, source, plan, offset, zeros = args
            start = time.perf_counter()
            args[1], _, health = chunk(state, None, source, plan, offset, steps, zeros)
            jax.block_until_ready(health)
            times[variant].append((time.perf_counter() - start) / steps)
    return statistics.median(times["checked"][5:]), statistics.median(times["unchecked"][5:])


class TimedTensorBoard(TensorBoardHook):
    """The TensorBoard hook, keeping the seconds spent in it (fetching the call's sums included)."""

    seconds = 0.0

    def after_call(self, *args):
        start = time.perf_counter()
        super().after_call(*args)
        self.seconds += time.perf_counter() - start

    def after_epoch(self, *args):
        start = time.perf_counter()
        super().after_epoch(*args)
        self.seconds += time.perf_counter() - start


def tensorboard_cost(name: str, repeats: int) -> tuple[float, float, float]:
    """(loop wall without events, with events, seconds in the log / training seconds), medians."""
    student, teacher, data, config = family(name)
    config.train.epochs = 12 if name == "main_job" else 4
    teacher_vars = dict(teacher.init(jax.random.key(1), data.x_train[: config.train.batch_size]))

    def run(logged: bool) -> tuple[float, float]:
        with tempfile.TemporaryDirectory() as directory:
            hook = TimedTensorBoard(LevelLog(directory)) if logged else None
            start = time.perf_counter()
            result = train_level(student, data, config, level=2, teacher=(teacher, teacher_vars),
                                 hooks=[hook] if logged else [])
            wall = time.perf_counter() - start - result.compile_time
            if hook is not None:
                hook.log.close()
        return wall, (hook.seconds / result.train_time if logged else 0.0)

    run(False), run(True)  # warm-up
    samples = {False: [], True: []}
    for _ in range(repeats):
        for logged in (False, True):
            samples[logged].append(run(logged))
    return (statistics.median(s[0] for s in samples[False]), statistics.median(s[0] for s in samples[True]),
            statistics.median(s[1] for s in samples[True]))


def main(argv):
    del argv
    print(f"jax {jax.__version__}, {jax.devices()[0].device_kind}, {_REPEATS.value} repeats (medians)\n")
    print("| family | ms/step, check off | check on | check cost | loop wall (s), no events | with events | "
          "events cost (wall) | time in the log / training time |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for name in _FAMILIES.value:
        checked, unchecked = check_cost(name)
        plain, logged, share = tensorboard_cost(name, _REPEATS.value)
        print(f"| {name} | {unchecked * 1e3:.4f} | {checked * 1e3:.4f} | {checked / unchecked - 1:+.2%} | "
              f"{plain:.3f} | {logged:.3f} | {logged / plain - 1:+.2%} | {share:.2%} |", flush=True)


if __name__ == "__main__":
    app.run(main)
