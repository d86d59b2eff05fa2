"""Many training steps per call: the compiled loops that keep an accelerator busy.

A level's training runs as calls of one compiled program, each running n train steps in a `while_loop`
(n, a traced argument, is chosen per call; the batches' plan has a fixed capacity, see
sal_jax.parallel.SplitBatches), with the epoch's metric sums carried on the device. Evaluation runs a
split the same way: a whole split in one call when it is on the device. So the host is involved once
per call -- checkpoint, preemption, time budget, progress -- not once per step.

Because n is an argument, every call of a level runs the *same* compiled program whatever n is: on a
CPU, any `train.steps_per_call` gives bit-identical results (a plan capacity of 1 versus 2 changes XLA's
program and its float rounding, which is why the capacity never follows steps_per_call). The programs
are compiled before the first step (`compile_ahead`), off the training clock. One exception to the
loop: XLA:CPU with convolutions (`needs_host_loop`), where a call dispatches single steps instead.
"""
from __future__ import annotations

import concurrent.futures
import dataclasses
import json
import math
from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from sal_jax.config import flat_config
from sal_jax.data.arrays import ArrayDataset
from sal_jax.levels import Variables
from sal_jax.parallel import SplitBatches, StepShardings
from sal_jax.step import Metrics, Step, TrainState

CALL_SECONDS = 0.1  # steps_per_call = 0: calls sized to take about this long

# (state, teacher_variables, source, plan, offset, n, sums) -> (state, sums, health) for training, sums for
# evaluation. health = {"step": the first step of the call whose metrics (loss terms, gradient norms) were
# not all finite, as the count of the level's steps before it (-1: none), "metrics": that step's metrics}.
# A call stops at that step. Read with the call's result: no extra host sync, one check per step.
TrainChunk = Callable[..., tuple[TrainState, Metrics, dict[str, Any]]]
EvalChunk = Callable[..., Metrics]


def finite(metrics: Metrics) -> jax.Array:
    """Whether every metric of a step is finite (scalars)."""
    return jnp.all(jnp.isfinite(jnp.stack(jax.tree.leaves(metrics))))


def _health(step: jax.Array, metrics: Metrics, all_finite: jax.Array) -> dict[str, Any]:
    return {"step": jnp.where(all_finite, -1, step), "metrics": metrics}


def _batch(split: SplitBatches, shardings: StepShardings, source: Any, plan: Any, row: jax.Array) -> Any:
    batch = split.gather(source, jax.tree.map(lambda a: a[row], plan))
    return jax.lax.with_sharding_constraint(batch, shardings.batch)


def _shardings(split: SplitBatches, shardings: StepShardings, scalars: int = 2) -> tuple:
    """in_shardings of (state, teacher_variables, source, plan, <scalars: offset, n or row>, sums)."""
    r = shardings.replicated
    return (shardings.state, shardings.teacher, r, split.plan_sharding, *[r] * scalars, r)


def make_train_chunk(train_step: Step, split: SplitBatches, shardings: StepShardings, device_loop: bool = True
                     ) -> TrainChunk:
    """chunk(state, teacher_variables, source, plan, offset, n, sums) -> (state, sums, health): train steps on
    plan rows offset..offset+n, adding each step's metrics to `sums` and watching them for non-finite
    values (`health`, see TrainChunk). The state is donated (the sums are not: a level's zeros start every
    epoch).

    device_loop: one compiled call runs all n steps (a `while_loop`). Else the call dispatches a compiled
    single step n times from Python, without waiting between them: for XLA:CPU and convolutions, whose
    weight gradients it compiles ~30x slower inside a loop (`needs_host_loop`). Either way every step of
    a level runs the same program, whatever n.
    """
    def step_and_add(state, teacher_variables, source, plan, row, sums):
        state, metrics = train_step(state, teacher_variables, _batch(split, shardings, source, plan, row))
        return state, jax.tree.map(jnp.add, sums, metrics), metrics

    r = shardings.replicated
    out_shardings = (shardings.state, r, r)
    if not device_loop:
        def watched_step(state, teacher_variables, source, plan, row, sums, watch):
            # The host does not wait between steps, which run on: keep the first non-finite step and metrics.
            step, bad_metrics, all_finite = watch
            new_state, sums, metrics = step_and_add(state, teacher_variables, source, plan, row, sums)
            keep = lambda old, new: jnp.where(all_finite, new, old)
            return new_state, sums, (keep(step, state.step), jax.tree.map(keep, bad_metrics, metrics),
                                     all_finite & finite(metrics))

        one_step = jax.jit(watched_step, donate_argnums=0, in_shardings=(*_shardings(split, shardings, 1), r),
                           out_shardings=out_shardings)
        compiled = []  # the step's executable, once `compile_ahead` has built it

        def host_loop(state, teacher_variables, source, plan, offset, n, sums):
            watch = jax.device_put((jnp.int32(0), sums, jnp.bool_(True)), r)  # (step, its metrics, all finite)
            if n == 0 and not compiled:  # compile_ahead: build the executable, run nothing
                compiled.append(one_step.lower(state, teacher_variables, source, plan, offset, sums, watch).compile())
            step = compiled[0] if compiled else one_step
            for i in range(n):
                state, sums, watch = step(state, teacher_variables, source, plan, offset + i, sums, watch)
            return state, sums, _health(*watch)
        host_loop._cache_size = lambda: len(compiled) + one_step._cache_size()  # as a jitted function reports
        return host_loop

    def train_chunk(state, teacher_variables, source, plan, offset, n, sums):
        def body(carry):  # one step; the loop stops after one whose metrics are not all finite
            i, state, sums, _, _ = carry
            state, sums, metrics = step_and_add(state, teacher_variables, source, plan, offset + i, sums)
            return i + 1, state, sums, metrics, finite(metrics)

        start = (jnp.int32(0), state, sums, jax.tree.map(jnp.zeros_like, sums), jnp.bool_(True))
        _, state, sums, metrics, all_finite = jax.lax.while_loop(lambda c: (c[0] < n) & c[4], body, start)
        return state, sums, _health(state.step - 1, metrics, all_finite)  # it stopped after the first bad step

    return jax.jit(train_chunk, donate_argnums=0, in_shardings=_shardings(split, shardings),
                   out_shardings=out_shardings)


def make_eval_chunk(eval_step: Callable[..., Metrics], split: SplitBatches, shardings: StepShardings) -> EvalChunk:
    """jit(chunk(state, teacher_variables, source, plan, offset, n, sums) -> sums): eval_step's sums added
    over plan rows offset..offset+n."""

    def eval_chunk(state, teacher_variables, source, plan, offset, n, sums):
        def body(i, sums):
            metrics = eval_step(state, teacher_variables, _batch(split, shardings, source, plan, offset + i))
            return jax.tree.map(jnp.add, sums, metrics)
        return jax.lax.fori_loop(0, n, body, sums)

    return jax.jit(eval_chunk, in_shardings=_shardings(split, shardings),
                   out_shardings=shardings.replicated)


def trace_step(step: Callable, split: SplitBatches, state: TrainState, teacher_variables: Variables | None
               ) -> tuple[Any, Any]:
    """(jaxpr, output shapes) of `step` on one batch of `split`: traced once, abstractly."""
    return jax.make_jaxpr(lambda row: step(state, teacher_variables, split.gather(split.source, row)),
                          return_shape=True)(split.row_shape())


def zero_sums(metrics: Any, shardings: StepShardings) -> Metrics:
    """Zeros shaped like a step's `metrics` (shapes, e.g. from `trace_step`): where a pass's sums start.
    0 + x == x, so they add up to the same bits as summing from the first step."""
    # laid out as the chunks return sums, so that zeros and returned sums are one input type (one compile)
    return jax.device_put(jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), metrics), shardings.replicated)


def needs_host_loop(step_jaxpr: Any) -> bool:
    """Whether a train step should run as single-step calls (make_train_chunk's device_loop=False): on
    XLA:CPU, when it has a convolution. Measured on this project's CPU (jax 0.10.2): a conv kernel's
    gradient takes 46 ms as a step and 2.2 s inside a loop (XLA leaves it in a layout its fast
    convolution does not take); a 16x32x64 CNN's guided step 28 ms and 860 ms. Forward convolutions are
    fine, so evaluation keeps its loop."""
    return jax.default_backend() == "cpu" and "conv_general_dilated" in str(step_jaxpr)


def compile_ahead(chunk: Callable, split: SplitBatches, state: TrainState, teacher_variables: Variables | None,
                  zeros: Metrics) -> Any:
    """Compiles `chunk` (train or eval) by calling it for zero steps, so that compilation stays off the
    training clock; returns what the call returns (a train chunk's state: the same values, in the
    buffers of the donated ones)."""
    plan, offset = split.plan(None, 0, 1)
    return chunk(state, teacher_variables, split.source, plan, offset, 0, zeros)


@dataclasses.dataclass(frozen=True)
class LevelPrograms:
    """A level's compiled training and evaluation calls, and the zeros their metric sums start from;
    and, when asked for, its gradient diagnostics on one batch (see `make_batch_program`)."""

    train: TrainChunk
    evaluate: EvalChunk
    train_zeros: Metrics
    eval_zeros: Metrics
    diagnose: Callable[..., Metrics] | None = None
    teacher_forward: Callable | None = None  # the teacher cache's pass (sal_jax.teacher_cache), when it has one


# Settings that no compiled program of a level reads: the run's bookkeeping, and what the loop around the
# programs does (how long, how often to evaluate or save). Left out of `program_key`, so that e.g. an
# ablation's unguided top level or a run with other checkpoint settings reuses the compiled level.
PROGRAM_NEUTRAL = ("checkpoint.", "tensorboard", "num_seeds", "quick", "sweep.", "ablations", "baselines.",
                   "train.epochs", "train.rounds", "train.eval_every", "train.steps_per_call", "train.ensemble")


def program_key(student: nn.Module, teacher: nn.Module | None, data: ArrayDataset,
                config: ml_collections.ConfigDict, epochs: int, state: TrainState) -> tuple:
    """What a level's compiled programs (`ProgramCache`) depend on besides their arguments'
    values: the modules, the data's shapes, the settings the programs read (not PROGRAM_NEUTRAL; the
    guidance's only when guided), the seed only as the key of on-device augmentation, when guided the
    epochs (the guidance schedule's length), and the level's constant collections (a frozen GLAI level
    runs another program than an unfrozen one)."""
    neutral = PROGRAM_NEUTRAL + (("guidance.",) if teacher is None else ())
    settings = {k: v for k, v in flat_config(config).items() if k != "seed" and not k.startswith(neutral)}
    return (id(student), id(teacher), data.x_train.shape, data.x_test.shape, str(data.x_train.dtype),
            json.dumps(settings, sort_keys=True, default=str), epochs if teacher is not None else None,
            config.seed if config.data.augment else None, jax.process_count(), tuple(sorted(state.constants)))


class ProgramCache:
    """Compiled levels kept for the next training of the same level: another seed, or the plain baselines
    of a level (one program, whatever their epochs or time budget). A program depends on shapes and on
    settings, never on values -- parameters, data, the teacher's variables and the seed are its arguments
    -- so a reused one computes the same bits as a fresh compile of it. `key` says what it depends on
    (`program_key`). Reuse saves a level's tracing, lowering and compiling (~0.1-1.5 s each,
    more on a GPU; the persistent compilation cache saves only the compiling), which dominates small
    levels' time. Hold one per dataset: entries keep their levels' programs alive.
    """

    def __init__(self) -> None:
        self._entries: dict[tuple, tuple[LevelPrograms, Any]] = {}

    def get(self, key: tuple) -> LevelPrograms | None:
        entry = self._entries.get(key)
        return None if entry is None else entry[0]

    def put(self, key: tuple, programs: LevelPrograms, keep_alive: Any) -> None:
        """keep_alive: objects whose id() the key holds (modules): kept, so that no other object takes their id."""
        self._entries[key] = (programs, keep_alive)

    def __len__(self) -> int:
        return len(self._entries)


def make_batch_program(fn: Callable[..., Metrics], split: SplitBatches, shardings: StepShardings
                       ) -> Callable[..., Metrics]:
    """jit(program(state, teacher_variables, source, plan, offset) -> fn's metrics) on plan row `offset`."""
    def program(state, teacher_variables, source, plan, offset):
        return fn(state, teacher_variables, _batch(split, shardings, source, plan, offset))

    return jax.jit(program, in_shardings=_shardings(split, shardings, scalars=1)[:-1],
                   out_shardings=shardings.replicated)


def compile_level(train_step: Step, eval_step: Callable[..., Metrics], train_split: SplitBatches,
                  test_split: SplitBatches, shardings: StepShardings, state: TrainState,
                  teacher_variables: Variables | None, diagnose: Callable[..., Metrics] | None = None
                  ) -> tuple[LevelPrograms, TrainState]:
    """Traces and compiles a level's calls before its first step; returns them and the state (as the
    zero-step compiling call returns it: the same values). With `diagnose` (a batch's gradient
    diagnostics, sal_jax.step), its program too."""
    train_jaxpr, train_outputs = trace_step(train_step, train_split, state, teacher_variables)
    _, eval_outputs = trace_step(eval_step, test_split, state, teacher_variables)
    programs = LevelPrograms(
        make_train_chunk(train_step, train_split, shardings, device_loop=not needs_host_loop(train_jaxpr)),
        make_eval_chunk(eval_step, test_split, shardings),
        zero_sums(train_outputs[1], shardings), zero_sums(eval_outputs, shardings))  # train: (state, metrics)
    # Evaluation compiles in a second thread while training is traced and compiled here: XLA releases the
    # GIL while it compiles, so on a machine with two cores a level's compilation takes about the time of
    # its longest program. Traced here, not in the thread: tracing is Python, and NNX's (flax.nnx) is not
    # safe in two threads at once. Lowered from the state's shapes (the train call donates the arrays); the
    # jitted eval's own cache then holds the executable, and its first call below compiles nothing.
    abstract_state = jax.tree.map(
        lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=a.sharding, weak_type=a.weak_type), state)
    plan, offset = test_split.plan(None, 0, 1)
    lowered_eval = programs.evaluate.lower(abstract_state, teacher_variables, test_split.source, plan, offset, 0,
                                           programs.eval_zeros)
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        eval_compiled = pool.submit(lowered_eval.compile)
        state, _, _ = compile_ahead(programs.train, train_split, state, teacher_variables, programs.train_zeros)
        eval_compiled.result()
    jax.block_until_ready(compile_ahead(programs.evaluate, test_split, state, teacher_variables, programs.eval_zeros))
    if diagnose is not None:
        plan, offset = train_split.plan(None, 0, 1)
        program = make_batch_program(diagnose, train_split, shardings)
        programs = dataclasses.replace(programs, diagnose=program.lower(
            state, teacher_variables, train_split.source, plan, offset).compile())
    return programs, state


def evaluate(eval_chunk: EvalChunk, zeros: Metrics, state: TrainState, teacher_variables: Variables | None,
             split: SplitBatches) -> dict[str, float]:
    """Means over a whole split (padding excluded): one call when the split is on the device, one host sync."""
    sums = zeros
    for start in range(0, split.num_batches, split.capacity):
        n = min(split.capacity, split.num_batches - start)
        plan, offset = split.plan(None, start, n)
        sums = eval_chunk(state, teacher_variables, split.source, plan, offset, n, sums)
    sums = jax.device_get(sums)
    count = sums.pop("count")
    return {k: float(v / count) for k, v in sums.items()}


@dataclasses.dataclass
class ChunkSizer:
    """How many steps the next call runs.

    steps_per_call > 0: that many. 0: as many as take about CALL_SECONDS, from the last call's time (the
    first call of a level, which compiles, runs one step). Either way never past `limit` (the epoch's end,
    the next checkpoint) and, against a time budget, no more than the time left allows by the same
    estimate: the run then stops within about one step of its budget, and at worst within one call.
    """

    steps_per_call: int
    seconds_per_step: float | None = None

    def next(self, limit: int, time_left: float | None = None) -> int:
        known = self.seconds_per_step is not None
        if self.steps_per_call > 0:
            n = self.steps_per_call
        else:
            n = max(1, int(CALL_SECONDS / self.seconds_per_step)) if known else 1
        if time_left is not None:
            n = min(n, max(1, math.ceil(time_left / self.seconds_per_step)) if known else 1)
        return max(1, min(n, limit))

    def observe(self, steps: int, seconds: float) -> None:
        self.seconds_per_step = seconds / steps
