"""One level's training: `setup_level` builds everything it needs (one record), `run_level` is the loop,
which calls hooks (sal_jax.hooks) at named points; `train_level` puts the two together.

Determinism: a level's initial parameters are a function of (seed, level) and each epoch's example order
of (seed, level, round, epoch), so SAL's bottom level and its plain baseline start from the same
weights and see the same batches; only the guidance differs.
"""
from __future__ import annotations

import dataclasses
import math
import sys
import time
from typing import Any, Protocol, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from sal_jax import chunks, compute_budget, families, parallel
from sal_jax.data.arrays import ArrayDataset, epoch_order
from sal_jax.data.images import augment_images
from sal_jax.errors import TrainingDiverged
from sal_jax.guidance import Guidance, make_guidance
from sal_jax.hooks import Call, EpochLimit, Hook, ProgressBar, StepBudget, TimeBudget
from sal_jax.levels import Variables, host_device
from sal_jax.members import OPTIMIZER_SETTINGS, check_member_settings, member, member_optimizer, settings_states, stack
from sal_jax.optimizers import make_optimizer
from sal_jax.records import LevelRun, Progress
from sal_jax.step import (TrainState, eval_step_fn, gradient_diagnostics_fn, init_state, level_constants,
                          level_variables, train_step_fn)
from sal_jax.teacher_cache import compile_teacher_forward, teacher_cache, with_feature_scales


@dataclasses.dataclass(frozen=True)
class LevelPlan:
    """What one training of one level is: the level, what guides it and where it starts."""

    student: nn.Module
    level: int                                            # 1-based, 1 = top
    round: int = 1
    epochs: int = 1                                       # the guidance schedule's length; the end without a budget
    teacher: tuple[nn.Module, Variables] | None = None    # the frozen level above: (module, variables)
    start_from: Variables | None = None                   # the level's own variables from the previous round
    continue_from: LevelRun | None = None                 # an earlier part of this training (GLAI's structure phase)
    name: str = ""
    # Members (sal_jax.member_loop): the seeds of trainings of this level stacked in one program; () = one
    # lone training of config.seed. With members, teacher and start_from variables are stacked too.
    seeds: tuple[int, ...] = ()
    frozen: tuple[int, ...] = ()                          # members that failed in an earlier phase
    # members' own values of sal_jax.members.MEMBER_SETTINGS (key -> one per member); {} = the config's
    settings: dict[str, tuple] = dataclasses.field(default_factory=dict)

    @property
    def title(self) -> str:
        return self.name or f"level {self.level}"


@dataclasses.dataclass
class LevelSetup:
    """Everything a level's loop needs, built by `setup_level` before its first step."""

    state: TrainState      # laid out on the mesh
    progress: Progress     # a fresh, continued or resumed level's
    calls: LevelCalls      # the compiled training and evaluation, with their data
    compile_time: float    # seconds tracing and compiling (not training time)


class LevelCalls(Protocol):
    """How the loop runs a level's compiled programs: `LoneCalls` (one training) or
    sal_jax.member_loop.MemberCalls (members stacked). History rows hold a number per metric for one
    training, a list (one per member) for members."""

    def start_epoch(self, epoch: int) -> None:
        """Before an epoch's first call (and before a resumed epoch continues): its example order."""

    def train(self, state: TrainState, progress: Progress, n: int) -> TrainState:
        """Runs the epoch's next n steps from progress.step_in_epoch, adding to progress.sums; returns
        when they are done."""

    def epoch_means(self, state: TrainState, progress: Progress) -> dict[str, Any]:
        """The epoch's training means (and diagnostics) for its history row."""

    def evaluate(self, state: TrainState) -> dict[str, Any]:
        """The test metrics, as "test_<metric>"."""

    def place(self, state: TrainState) -> TrainState:
        """A state (from a hook's between_epochs) laid out as the calls take it."""

    def level_run(self, plan: LevelPlan, state: TrainState, progress: Progress, compile_time: float) -> LevelRun:
        """The finished level."""

    def host_metrics(self, state: TrainState, progress: Progress) -> tuple[Any, Any]:
        """(steps, the epoch's metric sums) on the host, as hooks read them after a call (e.g. TensorBoard)."""


@dataclasses.dataclass
class LevelLoop:
    """What hooks see of a level as it trains (sal_jax.hooks)."""

    plan: LevelPlan
    setup: LevelSetup
    data: ArrayDataset
    config: ml_collections.ConfigDict
    state: TrainState
    progress: Progress
    seconds_per_step: float | None = None  # the last call's pace

    @property
    def steps_per_epoch(self) -> int:
        return len(self.data.x_train) // self.config.train.batch_size


def use_teacher_cache(config: ml_collections.ConfigDict, guidance: Guidance | None) -> bool:
    """Cache the teacher's outputs when it guides, inputs never change (no augmentation) and one process
    holds all the data (several processes fall back to the teacher forward in every step)."""
    return (guidance is not None and guidance.active and config.guidance.cache_teacher
            and not config.data.augment and jax.process_count() == 1)


def run_key(seed: int, level: int, round_: int) -> jax.Array:
    """The key of a level's training in one round, from which its on-device randomness (augmentation, a
    sparse level's evolution) derives: a pure function of (seed, level, round), as resuming needs."""
    return jax.random.fold_in(jax.random.fold_in(jax.random.key(seed), level), round_)


def initial_state(plan: LevelPlan, data: ArrayDataset, config: ml_collections.ConfigDict
                  ) -> tuple[Guidance | None, Any, TrainState]:
    """(guidance, optimizer, initial state) of one level's training: cheap, and abstract-evaluable. With
    members (plan.seeds), their states stacked: member i's is the lone training's of seed i.

    The state is computed on the CPU (`host_device`), op by op as ever: on an accelerator each of an
    initialisation's hundreds of small ops is a dispatch (and a compilation the first time), which made a
    GPU spend seconds a level here; and the initial weights of a seed are then the same bits on every
    backend. setup_level lays the state out on its mesh."""
    steps_per_epoch = len(data.x_train) // config.train.batch_size
    with jax.default_device(host_device()):  # None: the default device
        sample_x = jnp.asarray(data.x_train[: config.train.batch_size])
        teacher = None if plan.teacher is None else plan.teacher[0]
        guidance = (make_guidance(plan.student, teacher, sample_x, config.guidance, plan.epochs * steps_per_epoch)
                    if teacher is not None else None)
        # members with optimizer settings of their own hold them in the optimizer state (data, not constants)
        tx = (member_optimizer(config.train) if any(k in OPTIMIZER_SETTINGS for k in plan.settings)
              else make_optimizer(config.train))

        def one(seed: int, start_from: Variables | None) -> TrainState:
            state = init_state(plan.student, tx, jax.random.fold_in(jax.random.key(seed), plan.level), sample_x,
                               guidance)
            if start_from is None:
                return state
            params = {**state.params, "model": start_from["params"]}
            return state.replace(params=params, batch_stats=start_from.get("batch_stats", {}),
                                 opt_state=tx.init(params), constants=level_constants(start_from))

        if not plan.seeds:
            return guidance, tx, one(config.seed, plan.start_from)
        starts = [None if plan.start_from is None else member(plan.start_from, i) for i in range(len(plan.seeds))]
        states = stack([one(seed, start) for seed, start in zip(plan.seeds, starts)])
        return guidance, tx, settings_states(states, plan.settings)


def setup_level(plan: LevelPlan, data: ArrayDataset, config: ml_collections.ConfigDict,
                resume: tuple[TrainState, Progress] | None = None,
                program_cache: chunks.ProgramCache | None = None) -> LevelSetup:
    """The mesh and shardings, the state on them, the teacher cache, the data splits and the compiled
    programs of one level's training (`resume`: a checkpoint's state and progress, continued exactly);
    members' (plan.seeds) by sal_jax.member_loop.

    The level's setup cost (teacher cache, copying the data to the devices) is training time, counted
    into the progress; tracing and compiling are not (`compile_time`): they are the compiler's cost, and
    with a compilation cache they would make a time-matched budget depend on the cache. Compiled programs
    are looked up in and kept in `program_cache` (`chunks.program_key`)."""
    if plan.seeds:
        from sal_jax.member_loop import setup_members  # members import this module
        return setup_members(plan, data, config, resume, program_cache)
    train = config.train
    mesh = parallel.make_mesh(config.parallel)
    parallel.check_batch_size(train.batch_size, mesh.shape[parallel.DATA], mesh.shape[parallel.FSDP])
    teacher, teacher_variables = plan.teacher if plan.teacher is not None else (None, None)
    guidance, tx, state = initial_state(plan, data, config)
    state, progress = starting_point(plan, state, resume)
    shardings = parallel.step_shardings(mesh, state, teacher_variables)
    # Initialised eagerly on the CPU (a jitted init can differ in the last bit, e.g. an RNN's orthogonal
    # init; see initial_state), then laid out on the mesh. Always a copy (may_alias=False): the train step
    # donates its state, and the arrays given here can outlive this level -- `start_from` is the previous
    # round's LevelRun.variables, which the result returns and the checkpoint saves; donating them deleted them.
    state = jax.device_put(state, shardings.state, may_alias=False)
    teacher_variables = jax.device_put(teacher_variables, shardings.teacher)

    compile_start = time.perf_counter()
    key = chunks.program_key(plan.student, teacher, data, config, plan.epochs, state)
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
    cache.update(families.batch_cache(plan.student, level_variables(state), data.x_train, train.batch_size))
    if scaled:  # the teacher's feature RMS on the training set: an argument of the steps, laid out like the teacher
        teacher_variables = with_feature_scales(guidance, teacher_variables, data.x_train, train.batch_size,
                                                forward, cache)
        shardings = parallel.step_shardings(mesh, state, teacher_variables)
        teacher_variables = jax.device_put(teacher_variables, shardings.teacher)
    on_device_mb = config.parallel.data_on_device_mb
    train_split = parallel.SplitBatches({"x": data.x_train, "y": data.y_train, **cache}, train.batch_size,
                                        shardings.batch, on_device_mb,
                                        num_batches=len(data.x_train) // train.batch_size)
    test_split = parallel.SplitBatches({"x": data.x_test, "y": data.y_test}, train.batch_size, shardings.batch,
                                       on_device_mb)
    progress.train_time += time.perf_counter() - setup_start  # the cache and the copies: this level's cost

    compile_start = time.perf_counter()
    programs = reused
    if programs is None:
        augment_key = run_key(config.seed, plan.level, plan.round)
        train_step = train_step_fn(plan.student, tx, guidance, augment_images if config.data.augment else None,
                                   augment_key)
        diagnose = (gradient_diagnostics_fn(plan.student, guidance) if guidance is not None and guidance.active
                    and config.guidance.get("gradient_diagnostics") else None)
        programs, state = chunks.compile_level(train_step, eval_step_fn(plan.student, guidance), train_split,
                                               test_split, shardings, state, teacher_variables, diagnose)
        programs = dataclasses.replace(programs, teacher_forward=forward)
        if program_cache is not None:
            program_cache.put(key, programs, keep_alive=(plan.student, teacher))
    compile_time += time.perf_counter() - compile_start
    calls = LoneCalls(plan, len(data.x_train), data.num_classes, config.seed, programs, teacher_variables,
                      shardings, train_split, test_split)
    return LevelSetup(state, progress, calls, compile_time)


def starting_point(plan: LevelPlan, state: TrainState, resume: tuple[TrainState, Progress] | None
                   ) -> tuple[TrainState, Progress]:
    """The state and progress a level starts from: a checkpoint's, the earlier part's it continues
    (its steps, epochs, history and clock), or a fresh start's."""
    if resume is not None:
        return resume
    if plan.continue_from is None:
        return state, Progress()
    earlier = plan.continue_from
    state = state.replace(step=jnp.asarray(earlier.steps, jnp.int32))
    return state, Progress(epoch=len(earlier.history), train_time=earlier.train_time, history=list(earlier.history))


@dataclasses.dataclass
class LoneCalls:
    """One training's calls (sal_jax.chunks): a non-finite step stops it with TrainingDiverged."""

    plan: LevelPlan
    num_examples: int
    num_classes: int
    seed: int
    programs: chunks.LevelPrograms
    teacher_variables: Variables | None
    shardings: parallel.StepShardings
    train_split: parallel.SplitBatches
    test_split: parallel.SplitBatches
    order: Any = None  # the epoch's example order

    def start_epoch(self, epoch: int) -> None:
        self.order = epoch_order(self.num_examples, self.seed, self.plan.level, self.plan.round, epoch)

    def train(self, state: TrainState, progress: Progress, n: int) -> TrainState:
        batch_plan, offset = self.train_split.plan(self.order, progress.step_in_epoch, n)
        sums = self.programs.train_zeros if progress.sums is None else progress.sums
        state, progress.sums, health = self.programs.train(state, self.teacher_variables, self.train_split.source,
                                                           batch_plan, offset, n, sums)
        health = jax.device_get(health)  # waits for the call
        if health["step"] >= 0:
            raise TrainingDiverged(nonfinite_message(self.plan.title, self.plan.level, self.plan.round, health))
        return state

    def epoch_means(self, state: TrainState, progress: Progress) -> dict[str, Any]:
        sums = jax.device_get(progress.sums)  # one host sync per epoch
        row = {f"train_{k}": float(v) / progress.step_in_epoch for k, v in sums.items()}
        if self.programs.diagnose is not None:  # on the epoch's first batch, with the epoch's final weights
            batch_plan, offset = self.train_split.plan(self.order, 0, 1)
            diagnostics = jax.device_get(self.programs.diagnose(state, self.teacher_variables,
                                                                self.train_split.source, batch_plan, offset))
            row.update({f"diag_{k}": float(v) for k, v in diagnostics.items()})
        return row

    def evaluate(self, state: TrainState) -> dict[str, Any]:
        test = chunks.evaluate(self.programs.evaluate, self.programs.eval_zeros, state, self.teacher_variables,
                               self.test_split)
        return {f"test_{k}": v for k, v in test.items()}

    def place(self, state: TrainState) -> TrainState:
        return jax.device_put(state, self.shardings.state)

    def level_run(self, plan: LevelPlan, state: TrainState, progress: Progress, compile_time: float) -> LevelRun:
        diverged = bool(progress.history) and diverged_ce(progress.history[-1]["train_ce"], self.num_classes,
                                                          plan.title)
        programs = self.programs
        return LevelRun(plan.title, plan.level, plan.round, level_variables(state), progress.history,
                        progress.train_time, int(state.step),
                        {"train": programs.train._cache_size(), "eval": programs.evaluate._cache_size()},
                        compile_time, diverged)

    def host_metrics(self, state: TrainState, progress: Progress) -> tuple[Any, Any]:
        return jax.device_get((state.step, progress.sums))  # replicated on every process


def diverged_ce(train_ce: float, num_classes: int, name: str) -> bool:
    """Whether a level's last epoch's training cross-entropy is above twice that of uniform guessing;
    reported on stderr if so."""
    uniform = math.log(num_classes)
    if train_ce > 2 * uniform:
        print(f"warning: {name} diverged: its last epoch's training cross-entropy is {train_ce:.4g}, uniform "
              f"guessing's is {uniform:.4g}", file=sys.stderr)
        return True
    return False


def run_level(plan: LevelPlan, setup: LevelSetup, data: ArrayDataset, config: ml_collections.ConfigDict,
              hooks: Sequence[Hook]) -> LevelRun:
    """The loop: epochs of training calls until a hook says stop (sal_jax.hooks: the points, their order).

    Each call runs up to config.train.steps_per_call steps (sal_jax.chunks.ChunkSizer), never past the
    epoch's end or a hook's `steps_until`. A non-finite loss term or gradient stops a lone training with
    TrainingDiverged (one line: the level, round, step and the term that went non-finite first), before
    any hook sees the state: nothing after it is saved (members: the member stops alone,
    sal_jax.member_loop). A finished level whose last epoch's training cross-entropy is above twice that
    of uniform guessing is returned with `diverged` set, and reported on stderr. The clock counts
    setup_level's setup and the training calls; evaluation and hooks are not training time (but
    `between_epochs`)."""
    loop = LevelLoop(plan, setup, data, config, setup.state, setup.progress)
    calls, prog = setup.calls, loop.progress
    sizer = chunks.ChunkSizer(config.train.steps_per_call)
    stopping = lambda: any([hook.stop(loop) for hook in hooks])  # every hook asked: agree() is collective
    try:
        for hook in hooks:  # off the training clock (a family's may compile)
            hook.start(loop)
        last = stopping()  # a resumed level may be done
        while not last:
            calls.start_epoch(prog.epoch)
            stopped = False
            while prog.step_in_epoch < loop.steps_per_epoch and not stopped:  # the ragged remainder is dropped
                requests = [n for n in (hook.steps_until(loop) for hook in hooks) if n is not None]
                requested = min(requests, default=None)
                limit = min([loop.steps_per_epoch - prog.step_in_epoch, *requests])
                n = parallel.agree(sizer.next(limit))  # every process runs the same steps
                start = time.perf_counter()
                loop.state = calls.train(loop.state, prog, n)
                seconds = time.perf_counter() - start
                prog.train_time += seconds
                prog.step_in_epoch += n
                sizer.observe(n, seconds)
                loop.seconds_per_step = sizer.seconds_per_step
                for hook in hooks:
                    hook.after_call(loop, Call(n, seconds, at_request=n == requested))
                stopped = stopping()
            row = {"epoch": prog.epoch + 1, "train_time": prog.train_time, **calls.epoch_means(loop.state, prog)}
            prog.epoch, prog.step_in_epoch, prog.sums = prog.epoch + 1, 0, None
            for hook in hooks:
                hook.measure(loop, row)
            last = stopping()  # decided once: the last row of a level is always evaluated, whatever ends it
            if last or prog.epoch % config.train.eval_every == 0:
                row.update(calls.evaluate(loop.state))
            prog.history.append(row)
            for hook in hooks:
                hook.after_epoch(loop, row)
            if not last:
                _between_epochs(loop, hooks)
    finally:
        for hook in hooks:
            hook.close(loop)
    return calls.level_run(plan, loop.state, prog, setup.compile_time)


def _between_epochs(loop: LevelLoop, hooks: Sequence[Hook]) -> None:
    """The hooks' new states, laid out on the mesh; training time (e.g. a sparse level's evolution is its
    method's cost). A resumed run redoes it from the epoch's last save."""
    for hook in hooks:
        start = time.perf_counter()
        state = hook.between_epochs(loop)
        if state is not None:
            loop.state = jax.block_until_ready(loop.setup.calls.place(state))
            loop.progress.train_time += time.perf_counter() - start


def train_level(student: nn.Module, data: ArrayDataset, config: ml_collections.ConfigDict, *, level: int,
                round_: int = 1, epochs: int | None = None, teacher: tuple[nn.Module, Variables] | None = None,
                start_from: Variables | None = None, time_budget: float | None = None,
                flop_budget: int | None = None, name: str = "",
                progress: bool = False, resume: tuple[TrainState, Progress] | None = None,
                hooks: Sequence[Hook] = (), program_cache: chunks.ProgramCache | None = None,
                continue_from: LevelRun | None = None, seeds: Sequence[int] = (),
                frozen: Sequence[int] = (), settings: dict[str, Sequence] | None = None) -> LevelRun:
    """Trains `student` (level `level`, 1-based) on `data`, guided by the frozen teacher if given.

    teacher: the frozen level above, (module, variables) -- e.g. sal_jax.checkpoint.load_level's result.
    start_from: the level's own variables from the previous round (params and BatchNorm statistics
      continue; optimizer state and projections start fresh, since the guidance target has changed).
    time_budget: stop after this many seconds of training instead of after `epochs` (the time-matched
      baseline; sal_jax.hooks.TimeBudget).
    flop_budget: stop at the step where the training's FLOPs would pass this many instead (the
      compute-matched baseline; sal_jax.compute_budget.step_budget, sal_jax.hooks.StepBudget).
    resume: a (state, progress) from a checkpoint; training continues exactly where it stopped.
    hooks: run at the loop's named points (sal_jax.hooks), after the loop's own: e.g. a family's epoch
      work, TensorBoard (sal_jax.summaries.TensorBoardHook), checkpoints (sal_jax.checkpoint), your metric.
    progress: a progress bar of epochs on stderr (when it is a terminal).
    program_cache: where the level's compiled programs are looked up and kept (`chunks.program_key`): a later
      seed's training of the same level then compiles nothing.
    continue_from: an earlier part of this level's training (a GLAI level's structure phase, whose
      variables `start_from` has frozen): its epochs, steps, history and training time continue here.
    seeds: train members of these seeds in one program (sal_jax.member_loop); `teacher` and `start_from`
      are then the members' stacked variables, and so is the result's (its history rows hold one value
      per member: sal_jax.member_loop.member_run picks one). `frozen`: members that failed before.
      `settings`: the members' own values of sal_jax.members.MEMBER_SETTINGS, e.g.
      {"guidance.hidden_weight": (0.3, 1.0, 3.0)} (one per member; the others are the config's).

    Runs on the mesh of `config.parallel` (sal_jax.parallel): one compilation for training and one for
    evaluation per level. See `setup_level` and `run_level` for what counts as training time. The
    result holds the training's FLOPs (sal_jax.compute_budget), counted off the training clock
    (`compile_time`) and kept in `program_cache`.
    """
    if time_budget is not None and flop_budget is not None:
        raise ValueError("train_level: give a time_budget or a flop_budget, not both")
    epochs = config.train.epochs if epochs is None else epochs
    settings = {k: tuple(v) for k, v in (settings or {}).items()}
    if settings:
        check_member_settings(config, settings, len(seeds))
    plan = LevelPlan(student, level, round_, epochs, teacher, start_from, continue_from, name, tuple(seeds),
                     tuple(frozen), settings)
    counting = time.perf_counter()
    flops = compute_budget.level_flops(plan, data, config, program_cache)
    counting = time.perf_counter() - counting
    setup = setup_level(plan, data, config, resume, program_cache)
    setup.compile_time += counting
    steps = None if flop_budget is None else compute_budget.step_budget(flop_budget, flops, continue_from)
    limit, total = _limit(epochs, time_budget, steps, len(data.x_train) // config.train.batch_size)
    bar = [ProgressBar(total, plan.title)] if progress else []
    # the limit first: its stop() is asked first, as before hooks existed (a time budget's is collective);
    # the caller's hooks are ordered by the caller (checkpoints last)
    run = run_level(plan, setup, data, config, [limit, *bar, *hooks])
    return compute_budget.with_flops(run, flops, continue_from, flop_budget, steps)


def _limit(epochs: int, time_budget: float | None, steps: int | None, steps_per_epoch: int
           ) -> tuple[Hook, int | None]:
    """The hook that ends a training, and the epochs it reaches for the progress bar (None: unknown)."""
    if time_budget is not None:
        return TimeBudget(time_budget), None
    if steps is not None:
        return StepBudget(steps), compute_budget.ceil_epochs(steps, steps_per_epoch)
    return EpochLimit(epochs), epochs


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
