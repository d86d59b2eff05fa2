"""The top-down SAL loop over levels and rounds, and the plain baselines, all from one `train_level`.

Determinism: a level's initial parameters are a function of (seed, level) and each epoch's example order
of (seed, level, round, epoch), so SAL's bottom level and its plain baseline start from the same
weights and see the same batches; only the guidance differs.
"""
from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import sys
import time
from typing import TYPE_CHECKING, Any, Iterator, Protocol, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
from tqdm.auto import tqdm

from sal_jax import chunks, families, glai, parallel
from sal_jax.data.arrays import ArrayDataset, epoch_order
from sal_jax.data.images import augment_images
from sal_jax.determinism import apply_determinism
from sal_jax.errors import TrainingDiverged
from sal_jax.guidance import make_guidance
from sal_jax.levels import Variables
from sal_jax.optimizers import make_optimizer
from sal_jax.records import LevelRun, Progress
from sal_jax.step import (TrainState, eval_step_fn, gradient_diagnostics_fn, init_state, level_constants,
                          level_variables, train_step_fn)
from sal_jax.teacher_cache import compile_teacher_forward, teacher_cache, with_feature_scales
from sal_jax.validation import validate_run

if TYPE_CHECKING:  # orbax is imported only when checkpointing
    from sal_jax.checkpoint import RunCheckpointer

class ChunkHook(Protocol):
    """Called between a level's training calls (sal_jax.checkpoint: saving, preemption); its time is not
    training time."""

    def steps_until_save(self) -> int:
        """Steps until the next save: a call ends there, so checkpoints land exactly every N steps."""

    def __call__(self, state: TrainState, progress: Progress, steps: int) -> None:
        """After a call that ran `steps` steps."""


class EpochHook(Protocol):
    """A level's own work at its epoch ends (a GLAI level's structure monitor, sal_jax.glai; a sparse
    level's evolution, sal_jax.sparse). What it keeps between epochs is a JSON record in Progress.monitor,
    so checkpointed: a resumed run continues it exactly."""

    def start(self, state: TrainState, x_train: Any) -> dict[str, Any]:
        """Before the level's first epoch, and before a resumed level continues (its record is then the
        checkpoint's): the record before the first epoch. Not training time."""

    def measure(self, state: TrainState, x_train: Any, record: dict[str, Any], row: dict[str, float]
                ) -> dict[str, Any]:
        """After an epoch, before its evaluation: its measures into `row`; the new record (with "stop" true
        the level's training ends after this epoch)."""

    def update(self, state: TrainState, record: dict[str, Any], epoch: int) -> TrainState:
        """Between epochs (not after the last): the state the next epoch starts from."""


class LevelLog(Protocol):
    """Where a level's metrics go as it trains (sal_jax.summaries: TensorBoard); not training time."""

    def train(self, step: int, means: dict[str, float]) -> None:
        """A training call's metric means over its steps; `step`: the level's steps after it."""

    def epoch(self, step: int, row: dict[str, float]) -> None:
        """An epoch's history row (train means, test metrics when evaluated, training time)."""

    def flush(self) -> None:
        """Everything logged so far to disk (before a checkpoint is saved)."""


def use_teacher_cache(config: ml_collections.ConfigDict, guidance) -> bool:
    """Cache the teacher's outputs when it guides, inputs never change (no augmentation) and one process
    holds all the data (several processes fall back to the teacher forward in every step)."""
    return (guidance is not None and guidance.active and config.guidance.cache_teacher
            and not config.data.augment and jax.process_count() == 1)


def host_device() -> jax.Device | None:
    """This process's first CPU device, where levels are initialised; None if the CPU backend is off
    (JAX_PLATFORMS without cpu)."""
    try:
        return jax.local_devices(backend="cpu")[0]
    except RuntimeError:
        return None


def run_key(seed: int, level: int, round_: int) -> jax.Array:
    """The key of a level's training in one round, from which its on-device randomness (augmentation, a
    sparse level's evolution) derives: a pure function of (seed, level, round), as resuming needs."""
    return jax.random.fold_in(jax.random.fold_in(jax.random.key(seed), level), round_)


def setup_level(student: nn.Module, data: ArrayDataset, config: ml_collections.ConfigDict, *, level: int,
                round_: int, epochs: int, teacher: nn.Module | None = None,
                start_from: Variables | None = None):
    """(guidance, optimizer, initial state) of one level's training: cheap, and abstract-evaluable.

    The state is computed on the CPU (`host_device`), op by op as ever: on an accelerator each of an
    initialisation's hundreds of small ops is a dispatch (and a compilation the first time), which made a
    GPU spend seconds a level here; and the initial weights of a seed are then the same bits on every
    backend. train_level lays the state out on its mesh (`start_from`, the previous round's level, is
    there already)."""
    steps_per_epoch = len(data.x_train) // config.train.batch_size
    with jax.default_device(host_device()):  # None: the default device
        sample_x = jnp.asarray(data.x_train[: config.train.batch_size])
        guidance = (make_guidance(student, teacher, sample_x, config.guidance, epochs * steps_per_epoch)
                    if teacher is not None else None)
        tx = make_optimizer(config.train)
        state = init_state(student, tx, jax.random.fold_in(jax.random.key(config.seed), level), sample_x, guidance)
        if start_from is not None:
            params = {**state.params, "model": start_from["params"]}
            state = state.replace(params=params, batch_stats=start_from.get("batch_stats", {}),
                                  opt_state=tx.init(params), constants=level_constants(start_from))
    return guidance, tx, state


def train_level(student: nn.Module, data: ArrayDataset, config: ml_collections.ConfigDict, *, level: int,
                round_: int = 1, epochs: int | None = None, teacher: tuple[nn.Module, Variables] | None = None,
                start_from: Variables | None = None, time_budget: float | None = None, name: str = "",
                progress: bool = False, resume: tuple[TrainState, Progress] | None = None,
                on_chunk: ChunkHook | None = None, log: LevelLog | None = None,
                program_cache: chunks.ProgramCache | None = None, epoch_hook: EpochHook | None = None,
                continue_from: LevelRun | None = None) -> LevelRun:
    """Trains `student` (level `level`, 1-based) on `data`, guided by the frozen teacher if given.

    teacher: the frozen level above, (module, variables) -- e.g. sal_jax.checkpoint.load_level's result.

    start_from: the level's own variables from the previous round (params and BatchNorm statistics
      continue; optimizer state and projections start fresh, since the guidance target has changed).
    time_budget: stop after this many seconds of training instead of after `epochs`; used by the
      time-matched baseline. Checked between calls, which shrink to fit the time left (sal_jax.chunks).
    resume: a (state, progress) from a checkpoint; training continues exactly where it stopped.
    on_chunk: called between training calls (checkpoints, preemption).
    log: receives each call's and each epoch's metrics (e.g. sal_jax.summaries.LevelLog: TensorBoard).
    program_cache: where the level's compiled programs are looked up and kept (`chunks.program_key`): a later
      seed's training of the same level then compiles nothing.
    epoch_hook: the level's own work at each epoch end (`EpochHook`: a GLAI level's structure monitor,
      which may end the training early; a sparse level's evolution, which changes the state between
      epochs); what it keeps is part of the progress, so checkpointed.
    continue_from: an earlier part of this level's training (a GLAI level's structure phase, whose
      variables `start_from` has frozen): its epochs, steps, history and training time continue here.

    A non-finite loss term or gradient stops training with TrainingDiverged (one line: the level, round,
    step and the term that went non-finite first), before `on_chunk` sees the state: nothing after it is
    saved. A finished level whose last epoch's training cross-entropy is above twice that
    of uniform guessing is returned with `diverged` set, and reported on stderr.

    Training runs `config.train.steps_per_call` steps per call (sal_jax.chunks). Its clock counts the
    level's setup (teacher cache, copying the data to the devices) and the training calls; compilation
    (done before the first call, kept as `compile_time`), evaluation, checkpoints, logging and the
    progress bar are not training time.
    Runs on the mesh of `config.parallel` (sal_jax.parallel): one compilation for training and one for
    evaluation per level.
    """
    train = config.train
    epochs = train.epochs if epochs is None else epochs
    steps_per_epoch = len(data.x_train) // train.batch_size
    mesh = parallel.make_mesh(config.parallel)
    parallel.check_batch_size(train.batch_size, mesh.shape[parallel.DATA], mesh.shape[parallel.FSDP])
    teacher, teacher_variables = teacher if teacher is not None else (None, None)
    guidance, tx, state = setup_level(student, data, config, level=level, round_=round_, epochs=epochs,
                                      teacher=teacher, start_from=start_from)
    state, prog = resume if resume is not None else (state, Progress())
    if resume is None and continue_from is not None:
        state = state.replace(step=jnp.asarray(continue_from.steps, jnp.int32))
        prog = Progress(epoch=len(continue_from.history), train_time=continue_from.train_time,
                        history=list(continue_from.history))
    shardings = parallel.step_shardings(mesh, state, teacher_variables)
    # Initialised eagerly on the CPU (a jitted init can differ in the last bit, e.g. an RNN's orthogonal
    # init; see setup_level), then laid out on the mesh. Always a copy (may_alias=False): the train step donates
    # its state, and the arrays given here can outlive this level -- `start_from` is the previous round's
    # LevelRun.variables, which the result returns and the checkpoint saves; donating them deleted them.
    state = jax.device_put(state, shardings.state, may_alias=False)
    teacher_variables = jax.device_put(teacher_variables, shardings.teacher)
    if epoch_hook is not None:  # off the training clock (it may compile); a resumed run keeps its record
        record = epoch_hook.start(state, data.x_train)
        prog.monitor = record if prog.monitor is None else prog.monitor
    augment_key = run_key(config.seed, level, round_)
    train_step = train_step_fn(student, tx, guidance, augment_images if config.data.augment else None, augment_key)
    eval_step = eval_step_fn(student, guidance)

    # Tracing and compiling happen apart from the training clock: compilation is the compiler's cost, not
    # training's, and with a compilation cache it would make a time-matched budget depend on the cache.
    compile_start = time.perf_counter()
    key = chunks.program_key(student, teacher, data, config, epochs, state)
    reused = None if program_cache is None else program_cache.get(key)
    cached = use_teacher_cache(config, guidance)
    scaled = guidance is not None and guidance.use_hidden and guidance.feature_norm != "none"
    forward = None
    if cached or scaled:
        forward = (reused.teacher_forward if reused is not None
                   else compile_teacher_forward(guidance, teacher_variables, data.x_train[:train.batch_size]))
    compile_time = time.perf_counter() - compile_start

    setup_start = time.perf_counter()
    cache = teacher_cache(guidance, teacher_variables, data.x_train, train.batch_size, forward) if cached else {}
    cache.update(glai.gate_cache(student, level_variables(state), data.x_train, train.batch_size))
    if scaled:  # the teacher's feature RMS on the training set: an argument of the steps, laid out like the teacher
        teacher_variables = with_feature_scales(guidance, teacher_variables, data.x_train, train.batch_size,
                                                forward, cache)
        shardings = parallel.step_shardings(mesh, state, teacher_variables)
        teacher_variables = jax.device_put(teacher_variables, shardings.teacher)
    on_device_mb = config.parallel.data_on_device_mb
    train_split = parallel.SplitBatches({"x": data.x_train, "y": data.y_train, **cache}, train.batch_size,
                                        shardings.batch, on_device_mb, num_batches=steps_per_epoch)
    test_split = parallel.SplitBatches({"x": data.x_test, "y": data.y_test}, train.batch_size, shardings.batch,
                                       on_device_mb)
    prog.train_time += time.perf_counter() - setup_start  # the cache and the copies: this level's cost

    compile_start = time.perf_counter()
    programs = reused
    if programs is None:
        diagnose = (gradient_diagnostics_fn(student, guidance) if guidance is not None and guidance.active
                    and config.guidance.get("gradient_diagnostics") else None)
        programs, state = chunks.compile_level(train_step, eval_step, train_split, test_split, shardings, state,
                                               teacher_variables, diagnose)
        programs = dataclasses.replace(programs, teacher_forward=forward)
        if program_cache is not None:
            program_cache.put(key, programs, keep_alive=(student, teacher))
    compile_time += time.perf_counter() - compile_start
    sizer = chunks.ChunkSizer(train.steps_per_call)

    def finished() -> bool:
        if epoch_hook is not None and prog.monitor.get("stop"):
            return True
        if time_budget is None:
            return prog.epoch >= epochs
        # A time budget is judged by process 0's clock: all processes must stop at the same step. One
        # smaller than the level's setup (tiny runs) still runs one call: every run ends with an epoch row.
        # (The epoch count, not the history: an epoch's row is appended after its evaluation is decided.)
        started = prog.epoch > 0 or prog.step_in_epoch > 0
        return started and parallel.agree(prog.train_time >= time_budget)

    name = name or f"level {level}"
    # disable=None: no bar when stderr is not a terminal (a log file would collect every redraw)
    with tqdm(total=None if time_budget else epochs, initial=prog.epoch, desc=name,
              disable=None if progress else True, leave=False, unit="epoch") as bar:  # cleared on an exception too
        while not finished():
            order = epoch_order(len(data.x_train), config.seed, level, round_, prog.epoch)
            logged = None if log is None or prog.sums is None else jax.device_get(prog.sums)  # sums at the last log
            out_of_time = False
            while prog.step_in_epoch < steps_per_epoch and not out_of_time:  # the ragged remainder is dropped
                limit = steps_per_epoch - prog.step_in_epoch
                until_save = None if on_chunk is None else on_chunk.steps_until_save()
                if until_save is not None:
                    limit = min(limit, until_save)
                time_left = None if time_budget is None else time_budget - prog.train_time
                n = parallel.agree(sizer.next(limit, time_left))  # every process runs the same steps
                start = time.perf_counter()
                plan, offset = train_split.plan(order, prog.step_in_epoch, n)
                sums = programs.train_zeros if prog.sums is None else prog.sums
                state, prog.sums, health = programs.train(state, teacher_variables, train_split.source, plan,
                                                          offset, n, sums)
                # waits for the call; with a log, the sums come back in the same transfer
                health, sums = jax.device_get((health, None if log is None else prog.sums))
                seconds = time.perf_counter() - start
                if health["step"] >= 0:
                    raise TrainingDiverged(nonfinite_message(name, level, round_, health))
                if log is not None:
                    logged = _log_call(log, int(state.step), n, sums, logged)
                    if n == until_save:  # on disk before the checkpoint: a SIGKILL after it loses no event
                        log.flush()
                prog.train_time += seconds
                prog.step_in_epoch += n
                sizer.observe(n, seconds)
                if on_chunk is not None:
                    on_chunk(state, prog, n)
                out_of_time = time_budget is not None and finished()
            sums = jax.device_get(prog.sums)  # one host sync per epoch
            row = {"epoch": prog.epoch + 1, "train_time": prog.train_time}
            row.update({f"train_{k}": float(v) / prog.step_in_epoch for k, v in sums.items()})
            if programs.diagnose is not None:  # on the epoch's first batch, with the epoch's final weights
                plan, offset = train_split.plan(order, 0, 1)
                diagnostics = jax.device_get(programs.diagnose(state, teacher_variables, train_split.source, plan,
                                                               offset))
                row.update({f"diag_{k}": float(v) for k, v in diagnostics.items()})
            prog.epoch, prog.step_in_epoch, prog.sums = prog.epoch + 1, 0, None
            if epoch_hook is not None:
                prog.monitor = epoch_hook.measure(state, data.x_train, prog.monitor, row)
            last = finished()  # decided once: the last row of a level is always evaluated, whatever ends it
            if last or prog.epoch % train.eval_every == 0:
                test = chunks.evaluate(programs.evaluate, programs.eval_zeros, state, teacher_variables, test_split)
                row.update({f"test_{k}": v for k, v in test.items()})
                bar.set_postfix(test_acc=f"{row['test_accuracy']:.3f}", loss=f"{row['train_loss']:.3f}")
            prog.history.append(row)
            if log is not None:
                log.epoch(int(state.step), row)
            bar.update(1)
            if epoch_hook is not None and not last:  # a resumed run redoes it from the epoch's last save
                start = time.perf_counter()  # training time: e.g. a sparse level's evolution is its method's cost
                state = jax.block_until_ready(jax.device_put(epoch_hook.update(state, prog.monitor, prog.epoch),
                                                             shardings.state))
                prog.train_time += time.perf_counter() - start
    diverged = bool(prog.history) and prog.history[-1]["train_ce"] > 2 * math.log(data.num_classes)
    if diverged:
        print(f"warning: {name} diverged: its last epoch's training cross-entropy is "
              f"{prog.history[-1]['train_ce']:.4g}, uniform guessing's is {math.log(data.num_classes):.4g}",
              file=sys.stderr)
    return LevelRun(name, level, round_, level_variables(state), prog.history, prog.train_time, int(state.step),
                    {"train": programs.train._cache_size(), "eval": programs.evaluate._cache_size()}, compile_time,
                    diverged)


def _log_call(log: LevelLog, step: int, steps: int, sums: dict[str, Any], logged: dict[str, Any] | None
              ) -> dict[str, Any]:
    """Sends a call's metric means (the epoch's sums now, minus at the last call) to `log`; returns `sums`."""
    log.train(step, {k: (float(v) - (0.0 if logged is None else float(logged[k]))) / steps for k, v in sums.items()})
    return sums


TERMS = ("ce", "hidden", "output")


def nonfinite_message(name: str, level: int, round_: int, health: dict[str, Any]) -> str:
    """One line: where training went non-finite and which term first (a call's `health`, sal_jax.chunks)."""
    metrics = health["metrics"]
    bad = [k for k in TERMS if k in metrics and not math.isfinite(metrics[k])]
    grads = [k.split("/", 1)[1] for k, v in metrics.items() if k.startswith("grad_norm/") and not math.isfinite(v)]
    what = (f"the {' and '.join(bad)} term{'s' if len(bad) > 1 else ''} went non-finite" if bad
            else f"the gradient of {', '.join(grads)} went non-finite" if grads
            else "the loss went non-finite")
    values = ", ".join(f"{k}={metrics[k]:.4g}" for k in ("loss", *TERMS) if k in metrics)
    return (f"{name} (level {level}, round {round_}), training step {int(health['step']) + 1}: {what} first "
            f"({values}); training stopped there")


@dataclasses.dataclass
class LadderResult:
    sal: list[LevelRun]                    # every (round, level) run, in training order
    plain_epoch_matched: LevelRun | None   # the bottom level's plain baselines
    plain_time_matched: LevelRun | None
    # every level's plain baselines (the bottom's too), {level: {kind: run}}: the levels above the bottom
    # have them with config.baselines.every_level
    plain: dict[int, dict[str, LevelRun]] = dataclasses.field(default_factory=dict)

    @property
    def levels(self) -> list[Variables]:
        """The final variables of every level, top first; the last is the product."""
        last = {run.level: run.variables for run in self.sal}
        return [last[k] for k in sorted(last)]

    @property
    def sal_train_time(self) -> float:
        return sum(run.train_time for run in self.sal)


@dataclasses.dataclass(frozen=True)
class Phase:
    """One training of one level within a ladder run."""

    name: str
    kind: str    # "sal", "plain_epoch_matched" or "plain_time_matched"
    level: int   # 1-based
    round: int
    part: str = ""  # "structure": a GLAI level's structure phase; the phase after it continues that training


BASELINE_KINDS = {"plain_epoch_matched": "epoch-matched", "plain_time_matched": "time-matched"}


def ladder_phases(num_levels: int, config: ml_collections.ConfigDict) -> list[Phase]:
    """What a ladder run trains, in order: SAL level by level and round by round, then the baselines:
    the bottom level's, or with config.baselines.every_level every level's, top first. The level family
    may train one of them as several phases (a GLAI level's first training: its structure phase, then
    the rest; sal_jax.families)."""
    family = families.find(config.model.family)
    parts = family.phase_parts if family is not None else lambda phase: [phase]
    phases = [Phase(f"SAL r{r} L{k}", "sal", k, r)
              for r in range(1, config.train.rounds + 1) for k in range(1, num_levels + 1)]
    wanted = [kind for kind in BASELINE_KINDS if config.baselines[kind.removeprefix("plain_")]]
    for k in range(1 if config.baselines.every_level else num_levels, num_levels + 1):
        level = "" if k == num_levels else f" L{k}"  # the bottom's names are those of runs before every_level
        phases += [Phase(f"plain{level} ({BASELINE_KINDS[kind]})", kind, k, 1) for kind in wanted]
    return [part for phase in phases for part in parts(phase)]


def phase_inputs(phase: Phase, levels: Sequence[nn.Module], phases: Sequence[Phase], done: Sequence[LevelRun],
                 config: ml_collections.ConfigDict) -> dict[str, Any]:
    """train_level's arguments for `phase`, given the phases done before it."""
    def latest(level: int) -> Variables | None:
        runs = [run for run, p in zip(done, phases) if p.kind == "sal" and p.level == level]
        return runs[-1].variables if runs else None

    if phase.kind == "plain_epoch_matched":
        inputs = {"epochs": config.train.epochs * config.train.rounds}
    elif phase.kind == "plain_time_matched":  # SAL's time until this level was final: all of it for the bottom
        last = max(i for i, p in enumerate(phases) if p.kind == "sal" and p.level == phase.level)
        # a structure phase's time is counted by the phase that continues it
        inputs = {"time_budget": sum(run.train_time for run, p in zip(done, phases[:last + 1])
                                     if p.kind == "sal" and not p.part)}
    else:
        guided = phase.level > 1
        inputs = {"round_": phase.round, "start_from": latest(phase.level),
                  "teacher": (levels[phase.level - 2], latest(phase.level - 1)) if guided else None}
    family = families.find(config.model.family)  # the family's own work (sal_jax.families): none without one
    extra = {} if family is None else family.phase_inputs(phase, levels, phases, done, config, inputs.get("epochs"))
    return {**inputs, **extra}


def train_ladder(levels: Sequence[nn.Module], data: ArrayDataset, config: ml_collections.ConfigDict,
                 progress: bool = False, checkpoint_dir: str | None = None, log_dir: str | None = None,
                 program_cache: chunks.ProgramCache | None = None, checked: bool = False) -> LadderResult:
    """SAL top-down: level 1 on the task, then each level guided by the frozen level above, for
    `config.train.rounds` rounds; then the plain baselines of the bottom level that the config asks for.

    With `checkpoint_dir`, the run is checkpointed there and, if checkpoints exist, resumed exactly from
    the newest readable one (see sal_jax.checkpoint). With `config.deterministic`, call
    `sal_jax.enable_determinism()` before anything touches a device (or this does it, if nothing has).
    With `log_dir`, each phase writes TensorBoard events to log_dir/<phase> (`phase_run_name`;
    sal_jax.summaries). Compiled levels are shared through `program_cache` (a new one if None: the plain
    baselines of a level then share one program); pass one to several runs on the same data, e.g. seeds.
    `checked`: the caller has applied the config's determinism and validated this run (sal_jax.train does
    it for every cell before the first step), so it is not done again.
    """
    if not checked:
        apply_determinism(config.deterministic)
        validate_run(levels, data, config)
    phases = ladder_phases(len(levels), config)
    program_cache = chunks.ProgramCache() if program_cache is None else program_cache
    if checkpoint_dir is None:
        return _ladder_result(phases, run_phases(levels, data, config, phases, progress, log_dir=log_dir,
                                                 program_cache=program_cache))
    from sal_jax.checkpoint import RunCheckpointer  # orbax is imported only when checkpointing
    metadata = {"dataset": data.name, "num_classes": data.num_classes, "vocab_size": data.vocab_size,
                "phases": [dataclasses.asdict(p) for p in phases]}
    with RunCheckpointer(checkpoint_dir, config, metadata) as store:
        return _ladder_result(phases, run_phases(levels, data, config, phases, progress, store, log_dir,
                                                 program_cache))


def run_phases(levels: Sequence[nn.Module], data: ArrayDataset, config: ml_collections.ConfigDict,
               phases: Sequence[Phase], progress: bool, store: RunCheckpointer | None = None,
               log_dir: str | None = None,
               program_cache: chunks.ProgramCache | None = None) -> list[LevelRun]:
    """The ladder loop: every phase in order. With `store` (a sal_jax.checkpoint.RunCheckpointer), it
    continues from the store's newest readable checkpoint, saves during each phase and after it, and
    stops (raising Preempted) on a signal. With `log_dir`, TensorBoard events of each phase."""
    done, resume = ([], None) if store is None else _resume_point(store, levels, data, config, phases)
    for index in range(len(done), len(phases)):
        phase, on_chunk = phases[index], None
        if store is not None:
            store.start_phase(phase.name)
            on_chunk = store.phase_hook(list(done))
        start_step = 0 if resume is None else int(resume[0].step)
        with _phase_log(log_dir, phase, len(levels), config, start_step) as log, _kept_checkpoints(store):
            run = train_level(levels[phase.level - 1], data, config, level=phase.level, name=phase.name,
                              progress=progress, resume=resume, on_chunk=on_chunk, log=log,
                              program_cache=program_cache, **phase_inputs(phase, levels, phases, done, config))
            if log is not None:
                log.finish(run.steps, config, {"phase": phase.name, "level": phase.level, "round": phase.round},
                           {"final_test_accuracy": run.final_test_accuracy,
                            "best_test_accuracy": run.best_test_accuracy})
        done.append(run)
        resume = None
        if store is not None:
            store.save_finished(done)
    return done


@contextlib.contextmanager
def _kept_checkpoints(store: RunCheckpointer | None) -> Iterator[None]:
    """A divergence's one line says where the checkpoints from before it are (nothing saves after it)."""
    try:
        yield
    except TrainingDiverged as error:
        if store is None:
            raise
        raise TrainingDiverged(f"{error}; the checkpoints before it are kept in {store.directory}") from None


def phase_run_name(phase: Phase, rounds: int, num_levels: int) -> str:
    """A phase's TensorBoard run (folder) name: level2, round2_level3, plain_time_matched (the bottom's),
    plain_time_matched_level2; a GLAI structure phase's with "_structure" appended."""
    suffix = f"_{phase.part}" if phase.part else ""
    if phase.kind != "sal":
        return (phase.kind if phase.level == num_levels else f"{phase.kind}_level{phase.level}") + suffix
    return (f"level{phase.level}" if rounds == 1 else f"round{phase.round}_level{phase.level}") + suffix


@contextlib.contextmanager
def _phase_log(log_dir: str | None, phase: Phase, num_levels: int, config: ml_collections.ConfigDict,
               start_step: int
               ) -> Iterator[LevelLog | None]:
    """The phase's TensorBoard log (closed after it), or None without `log_dir` or on processes > 0."""
    if log_dir is None or jax.process_index() > 0:
        yield None
        return
    from sal_jax.summaries import LevelLog as TensorBoardLog  # tensorboardX is imported only when logging
    # Events are logged at the count of steps done: a phase resumed after step s redoes steps s + 1, ...
    log = TensorBoardLog(os.path.join(log_dir, phase_run_name(phase, config.train.rounds, num_levels)),
                         purge_step=start_step + 1)
    try:
        yield log
    finally:
        log.close()


def _resume_point(store: RunCheckpointer, levels: Sequence[nn.Module], data: ArrayDataset,
                  config: ml_collections.ConfigDict, phases: Sequence[Phase]
                  ) -> tuple[list[LevelRun], tuple[TrainState, Progress] | None]:
    """The finished phases and the phase in progress (its state and progress) of the store's newest
    readable checkpoint; ([], None) if there is none."""
    def state_template(done: list[LevelRun]) -> Any:
        phase = phases[len(done)]
        kwargs = phase_inputs(phase, levels, phases, done, config)
        teacher_module = kwargs["teacher"][0] if kwargs.get("teacher") else None
        return jax.eval_shape(lambda: setup_level(
            levels[phase.level - 1], data, config, level=phase.level, round_=kwargs.get("round_", 1),
            epochs=config.train.epochs, teacher=teacher_module, start_from=kwargs.get("start_from"))[2])

    snapshot = store.restore(state_template)
    if snapshot is None:
        return [], None
    done = snapshot.done
    resume = None if snapshot.state is None else (snapshot.state, snapshot.progress)
    where = (f"'{phases[len(done)].name}', epoch {resume[1].epoch + 1}, step {resume[1].step_in_epoch} of the epoch"
             if resume else f"the start of '{phases[len(done)].name}'" if len(done) < len(phases)
             else "the end: nothing to do")
    print(f"resuming {store.directory} at {where} (training step {store.run_step})", file=sys.stderr)
    return done, resume


def _ladder_result(phases: Sequence[Phase], done: Sequence[LevelRun]) -> LadderResult:
    # a GLAI structure phase is part of the phase after it, whose run holds both (history, steps, time)
    finished = [(p, run) for p, run in zip(phases, done) if not p.part]
    plain: dict[int, dict[str, LevelRun]] = {}
    for p, run in finished:
        if p.kind != "sal":
            plain.setdefault(p.level, {})[p.kind] = run
    bottom = plain.get(max(p.level for p in phases), {})
    return LadderResult([run for p, run in finished if p.kind == "sal"],
                        bottom.get("plain_epoch_matched"), bottom.get("plain_time_matched"), plain)
