"""The top-down SAL loop over levels and rounds, and the plain baselines: a ladder run is a list of
phases (`ladder_phases`), each one training of one level (sal_jax.level_loop.train_level).

Determinism: a level's initial parameters are a function of (seed, level) and each epoch's example order
of (seed, level, round, epoch), so SAL's bottom level and its plain baseline start from the same
weights and see the same batches; only the guidance differs.
"""
from __future__ import annotations

import contextlib
import dataclasses
import os
import sys
from typing import TYPE_CHECKING, Any, Iterator, Mapping, Sequence

import flax.linen as nn
import jax
import ml_collections
import numpy as np

from sal_jax import chunks, compute_budget, families
from sal_jax.data.arrays import ArrayDataset
from sal_jax.determinism import apply_determinism
from sal_jax.errors import TrainingDiverged
from sal_jax.hooks import Hook
from sal_jax.level_loop import LevelPlan, initial_state, train_level
from sal_jax.member_loop import member_run
from sal_jax.members import check_member_settings
from sal_jax.levels import Variables
from sal_jax.records import LevelRun, Progress
from sal_jax.step import TrainState
from sal_jax.validation import validate_run

if TYPE_CHECKING:  # orbax and tensorboardX are imported only when checkpointing or logging
    from sal_jax.checkpoint import RunCheckpointer
    from sal_jax.summaries import TensorBoardHook

@dataclasses.dataclass
class LadderResult:
    sal: list[LevelRun]                    # every (round, level) run, in training order
    plain_epoch_matched: LevelRun | None   # the bottom level's plain baselines
    plain_time_matched: LevelRun | None
    # every level's plain baselines (the bottom's too), {level: {kind: run}}: the levels above the bottom
    # have them with config.baselines.every_level
    plain: dict[int, dict[str, LevelRun]] = dataclasses.field(default_factory=dict)
    plain_compute_matched: LevelRun | None = None  # the bottom level's, for SAL's FLOPs

    @property
    def sal_flops(self) -> int | None:
        """FLOPs of SAL's whole training (sal_jax.compute_budget); None for runs from before they were counted."""
        return None if any(run.flops is None for run in self.sal) else sum(run.flops for run in self.sal)

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
    kind: str    # "sal", or a key of BASELINE_KINDS
    level: int   # 1-based
    round: int
    part: str = ""  # "structure": a GLAI level's structure phase; the phase after it continues that training


# The plain baselines, in the order they train (a sparse level's evolution key folds in the index: new
# kinds go last). Each is on with config.baselines.<kind without "plain_">.
BASELINE_KINDS = {"plain_epoch_matched": "epoch-matched", "plain_time_matched": "time-matched",
                  "plain_compute_matched": "compute-matched"}


def ladder_phases(num_levels: int, config: ml_collections.ConfigDict) -> list[Phase]:
    """What a ladder run trains, in order: SAL level by level and round by round, then the baselines
    (BASELINE_KINDS that the config asks for): the bottom level's, or with config.baselines.every_level
    every level's, top first. The level family
    may train one of them as several phases (a GLAI level's first training: its structure phase, then
    the rest; sal_jax.families)."""
    family = families.find(config.model.family)
    parts = family.phase_parts if family is not None else lambda phase: [phase]
    phases = [Phase(f"SAL r{r} L{k}", "sal", k, r)
              for r in range(1, config.train.rounds + 1) for k in range(1, num_levels + 1)]
    wanted = [kind for kind in BASELINE_KINDS if config.baselines.get(kind.removeprefix("plain_"), False)]
    for k in range(1 if config.baselines.every_level else num_levels, num_levels + 1):
        level = "" if k == num_levels else f" L{k}"  # the bottom's names are those of runs before every_level
        phases += [Phase(f"plain{level} ({BASELINE_KINDS[kind]})", kind, k, 1) for kind in wanted]
    return [part for phase in phases for part in parts(phase)]


def phase_inputs(phase: Phase, levels: Sequence[nn.Module], phases: Sequence[Phase], done: Sequence[LevelRun],
                 config: ml_collections.ConfigDict) -> dict[str, Any]:
    """train_level's arguments for `phase`, given the phases done before it. The time- and compute-matched
    budgets are SAL's training time and FLOPs until the phase's level was final: all of SAL's for the bottom."""
    def latest(level: int) -> Variables | None:
        runs = [run for run, p in zip(done, phases) if p.kind == "sal" and p.level == level]
        return runs[-1].variables if runs else None

    if phase.kind == "plain_epoch_matched":
        inputs = {"epochs": config.train.epochs * config.train.rounds}
    elif phase.kind == "plain_time_matched":
        inputs = {"time_budget": sum(run.train_time for run in sal_until(phase.level, phases, done))}
    elif phase.kind == "plain_compute_matched":
        inputs = {"flop_budget": compute_budget.sal_flops(sal_until(phase.level, phases, done))}
    else:
        guided = phase.level > 1
        inputs = {"round_": phase.round, "start_from": latest(phase.level),
                  "teacher": (levels[phase.level - 2], latest(phase.level - 1)) if guided else None}
    family = families.find(config.model.family)  # the family's own work (sal_jax.families): none without one
    extra = {} if family is None else family.phase_inputs(phase, levels, phases, done, config, inputs.get("epochs"))
    return {**inputs, **extra}


def sal_until(level: int, phases: Sequence[Phase], done: Sequence[LevelRun]) -> list[LevelRun]:
    """SAL's runs until `level` was final (its last round), those of levels above it included. A GLAI
    structure phase is left out: the phase that continues it holds its time and FLOPs."""
    last = max(i for i, p in enumerate(phases) if p.kind == "sal" and p.level == level)
    return [run for run, p in zip(done, phases[:last + 1]) if p.kind == "sal" and not p.part]


def train_ladder(levels: Sequence[nn.Module], data: ArrayDataset, config: ml_collections.ConfigDict,
                 progress: bool = False, checkpoint_dir: str | None = None, log_dir: str | None = None,
                 program_cache: chunks.ProgramCache | None = None, checked: bool = False,
                 hooks: Sequence[Hook] = ()) -> LadderResult:
    """SAL top-down: level 1 on the task, then each level guided by the frozen level above, for
    `config.train.rounds` rounds; then the plain baselines of the bottom level that the config asks for.

    With `checkpoint_dir`, the run is checkpointed there and, if checkpoints exist, resumed exactly from
    the newest readable one (see sal_jax.checkpoint). With `config.deterministic`, call
    `sal_jax.enable_determinism()` before anything touches a device (or this does it, if nothing has).
    With `log_dir`, each phase writes TensorBoard events to log_dir/<phase> (`phase_run_name`;
    sal_jax.summaries). Compiled levels are shared through `program_cache` (a new one if None: the plain
    baselines of a level then share one program); pass one to several runs on the same data, e.g. seeds.
    `checked`: the caller has applied the config's determinism and validated this run (sal_jax.train does
    it for every cell before the first step), so it is not done again. `hooks` (sal_jax.hooks) run in
    every phase, after the family's epoch work and before TensorBoard and checkpoints: e.g. a metric of
    your own in each epoch's history row.
    """
    phases, done = _train(levels, data, config, (), progress, checkpoint_dir, None if log_dir is None else [log_dir],
                          program_cache, checked, hooks)
    return _ladder_result(phases, done)


def train_members(levels: Sequence[nn.Module], data: ArrayDataset, config: ml_collections.ConfigDict,
                  seeds: Sequence[int], progress: bool = False, checkpoint_dir: str | None = None,
                  log_dirs: Sequence[str] | None = None, program_cache: chunks.ProgramCache | None = None,
                  checked: bool = False, hooks: Sequence[Hook] = (),
                  settings: Mapping[str, Sequence] | None = None) -> list[LadderResult]:
    """`train_ladder` for each of `seeds` (in place of config.seed), trained as members of one program in
    every phase (sal_jax.member_loop): one result per member, each equal to its lone ladder's to float32
    rounding. `settings`: the members' own values of settings that change no program
    (sal_jax.members.MEMBER_SETTINGS), e.g. {"guidance.hidden_weight": (0.3, 1.0, 3.0)} with one value per
    member (a seed may then appear more than once); each member's result equals the lone ladder of the
    config with its values. `sal_jax.members.split_members` makes (config, seeds, settings) of per-member
    configs. A member that goes non-finite stops alone: its runs say where (`LevelRun.failure`). One
    checkpoint directory holds them all; `log_dirs`: each member's TensorBoard folder."""
    settings = {k: tuple(v) for k, v in (settings or {}).items()}
    check_member_settings(config, settings, len(seeds))
    phases, done = _train(levels, data, config, tuple(seeds), progress, checkpoint_dir, log_dirs, program_cache,
                          checked, hooks, settings)
    return [_ladder_result(phases, [member_run(run, i) for run in done]) for i in range(len(seeds))]


def _train(levels: Sequence[nn.Module], data: ArrayDataset, config: ml_collections.ConfigDict, seeds: tuple[int, ...],
           progress: bool, checkpoint_dir: str | None, log_dirs: Sequence[str] | None,
           program_cache: chunks.ProgramCache | None, checked: bool, hooks: Sequence[Hook],
           settings: dict[str, tuple] | None = None) -> tuple[list[Phase], list[LevelRun]]:
    if not checked:
        apply_determinism(config.deterministic)
        validate_run(levels, data, config)
    phases = ladder_phases(len(levels), config)
    run = Run(levels, data, config, phases, seeds, progress, log_dirs,
              chunks.ProgramCache() if program_cache is None else program_cache, hooks, settings or {})
    if checkpoint_dir is None:
        return phases, run_phases(run)
    from sal_jax.checkpoint import RunCheckpointer  # orbax is imported only when checkpointing
    metadata = {"dataset": data.name, "num_classes": data.num_classes, "vocab_size": data.vocab_size,
                "phases": [dataclasses.asdict(p) for p in phases]}
    if seeds:  # what the stacked states are: a resume must train the same members
        metadata["members"] = {"seeds": list(seeds), "settings": {k: list(v) for k, v in (settings or {}).items()}}
    with RunCheckpointer(checkpoint_dir, config, metadata) as store:
        return phases, run_phases(run, store)


@dataclasses.dataclass(frozen=True)
class Run:
    """One ladder run: what it trains (levels, data, config, its phases; members' seeds or () for one
    training of config.seed) and what watches it."""

    levels: Sequence[nn.Module]
    data: ArrayDataset
    config: ml_collections.ConfigDict
    phases: Sequence[Phase]
    seeds: tuple[int, ...] = ()
    progress: bool = False
    log_dirs: Sequence[str] | None = None  # one per training (seed), each phase a TensorBoard run in it
    program_cache: chunks.ProgramCache | None = None
    hooks: Sequence[Hook] = ()
    settings: dict[str, tuple] = dataclasses.field(default_factory=dict)  # members' own MEMBER_SETTINGS


def run_phases(run: Run, store: RunCheckpointer | None = None) -> list[LevelRun]:
    """The ladder loop: every phase in order. With `store` (a sal_jax.checkpoint.RunCheckpointer), it
    continues from the store's newest readable checkpoint, saves during each phase and after it, and
    stops (raising Preempted) on a signal. With `run.log_dirs`, TensorBoard events of each phase. Each
    phase's hooks (sal_jax.hooks), in order: its family's epoch work, `run.hooks`, TensorBoard, checkpoints."""
    levels, config, phases = run.levels, run.config, run.phases
    done, resume = ([], None) if store is None else _resume_point(store, run)
    for index in range(len(done), len(phases)):
        phase = phases[index]
        if store is not None:
            store.start_phase(phase.name)
        inputs = phase_inputs(phase, levels, phases, done, config)
        # a member whose SAL went non-finite stays frozen in its later SAL phases (its teacher is gone); its
        # plain baselines, which need nothing of SAL but the time- and compute-matched budgets, train
        frozen = [i for i in range(len(run.seeds)) if phase.kind == "sal"
                  and any(r.failure[i] for r, p in zip(done, phases) if p.kind == "sal")]
        start_steps = ([0] * max(1, len(run.seeds)) if resume is None
                       else np.atleast_1d(jax.device_get(resume[0].step)).tolist())
        with _phase_log(run, phase, start_steps) as tensorboard, _kept_checkpoints(store):
            phase_hooks = [*inputs.pop("hooks", ()), *run.hooks, *([] if tensorboard is None else [tensorboard]),
                           *([] if store is None else [store.phase_hook(list(done))])]
            level_run = train_level(levels[phase.level - 1], run.data, config, level=phase.level, name=phase.name,
                                    progress=run.progress, resume=resume, hooks=phase_hooks,
                                    program_cache=run.program_cache, seeds=run.seeds, frozen=frozen,
                                    settings=run.settings, **inputs)
            if tensorboard is not None:
                tensorboard.finish(level_run, config, {"phase": phase.name, "level": phase.level, "round": phase.round})
        done.append(level_run)
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
    plain_compute_matched_level2; a GLAI structure phase's with "_structure" appended."""
    suffix = f"_{phase.part}" if phase.part else ""
    if phase.kind != "sal":
        return (phase.kind if phase.level == num_levels else f"{phase.kind}_level{phase.level}") + suffix
    return (f"level{phase.level}" if rounds == 1 else f"round{phase.round}_level{phase.level}") + suffix


@contextlib.contextmanager
def _phase_log(run: Run, phase: Phase, start_steps: Sequence[int]) -> Iterator[TensorBoardHook | None]:
    """The phase's TensorBoard logs as a hook (one LevelLog per training, closed after the phase), or None
    without log dirs or on processes > 0. `start_steps`: each training's steps done before (a resume)."""
    if run.log_dirs is None or jax.process_index() > 0:
        yield None
        return
    from sal_jax.summaries import LevelLog, TensorBoardHook  # tensorboardX is imported only when logging
    name = phase_run_name(phase, run.config.train.rounds, len(run.levels))
    # Events are logged at the count of steps done: a phase resumed after step s redoes steps s + 1, ...
    logs = [LevelLog(os.path.join(log_dir, name), purge_step=start + 1)
            for log_dir, start in zip(run.log_dirs, start_steps)]
    try:
        yield TensorBoardHook(logs)
    finally:
        for log in logs:
            log.close()


def _resume_point(store: RunCheckpointer, run: Run) -> tuple[list[LevelRun], tuple[TrainState, Progress] | None]:
    """The finished phases and the phase in progress (its state and progress) of the store's newest
    readable checkpoint; ([], None) if there is none."""
    phases = run.phases

    def state_template(done: list[LevelRun]) -> Any:
        phase = phases[len(done)]
        kwargs = phase_inputs(phase, run.levels, phases, done, run.config)
        plan = LevelPlan(run.levels[phase.level - 1], phase.level, kwargs.get("round_", 1), run.config.train.epochs,
                         kwargs.get("teacher"), kwargs.get("start_from"), seeds=run.seeds, settings=run.settings)
        return jax.eval_shape(lambda: initial_state(plan, run.data, run.config)[2])

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
                        bottom.get("plain_epoch_matched"), bottom.get("plain_time_matched"), plain,
                        bottom.get("plain_compute_matched"))
