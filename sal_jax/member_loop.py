"""Members in the level loop: one level's trainings of several seeds (`LevelPlan.seeds`) stacked in one
compiled program (sal_jax.members), run by the same loop and hooks as one training (sal_jax.level_loop).

Everything a ladder holds of a level is stacked: its train state, its teacher (member i is guided by
member i of the level above) and its finished variables. A stacked `LevelRun`'s history rows hold one value
per member for each metric (the epoch and the training time are shared), and so do its steps, diverged
flags and failures; `member_run` picks one member's, which is a lone training's record in every field. So
checkpoints, resume and the time-matched budget need nothing of their own: a checkpoint holds the stacked
state, and the members' training time is the program's, which each member would have had alone in it.

A member whose loss or gradient goes non-finite is frozen from that step (sal_jax.members) and its failure
is kept in the progress (`Progress.failures`: checkpointed); the others go on, and in later phases it
stays frozen (`LevelPlan.frozen`).

Members may differ in settings that change no program (`LevelPlan.settings`: λ_h, λ_o, T, learning rate,
weight decay; sal_jax.members.MEMBER_SETTINGS): the guidance's are inputs of the step, the optimizer's
live in its state (`optax.inject_hyperparams`).

What members do not do yet: a family's epoch work (GLAI's freeze, SET's evolution; those families train
their members in turn, sal_jax.families), gradient diagnostics, FSDP. Several processes
(jax.distributed): the members split over every process's devices; what the host reads of them (health,
metrics, finished variables) is gathered by every process (`members.fetch`).
"""
from __future__ import annotations

import dataclasses
import sys
import time
from typing import Any

import jax
import ml_collections
import numpy as np

from sal_jax import chunks, members
from sal_jax.data.arrays import ArrayDataset
from sal_jax.data.images import augment_images
from sal_jax.level_loop import (LevelPlan, LevelSetup, diverged_ce, initial_state, nonfinite_message, run_key,
                                starting_point, use_teacher_cache)
from sal_jax.records import LevelRun, Progress
from sal_jax.step import TrainState, level_variables
from sal_jax.teacher_cache import compile_teacher_forward, teacher_cache, with_feature_scales

FROZEN = "frozen: it failed in an earlier phase"


@dataclasses.dataclass(frozen=True)
class MemberPrograms:
    """A level's compiled member programs and the zeros they start from (cached per level and member count)."""

    train: members.MemberTrain
    evaluate: members.MemberEval
    train_zeros: Any
    healthy: dict[str, Any]   # every member healthy (sal_jax.members.make_member_train's health)
    eval_zeros: Any
    teacher_forward: Any = None


def setup_members(plan: LevelPlan, data: ArrayDataset, config: ml_collections.ConfigDict,
                  resume: tuple[TrainState, Progress] | None = None,
                  program_cache: chunks.ProgramCache | None = None) -> LevelSetup:
    """sal_jax.level_loop.setup_level for members: the members split over as many devices as divide them
    (the `ensemble` mesh axis), each with its teacher's cache (one pass of its teacher), its augmentation
    key and its epoch orders; with config.parallel.data = k, each member's batch over k devices
    (`members.member_mesh_shape`); what counts as training time is the lone setup's."""
    batch_size, m = config.train.batch_size, len(plan.seeds)
    mesh = members.make_member_mesh(*members.member_mesh_shape(m, config.parallel, jax.device_count()))
    shardings = members.member_shardings(mesh)
    teacher_variables = None if plan.teacher is None else plan.teacher[1]
    guidance, tx, state = initial_state(plan, data, config)
    state, progress = starting_point(plan, state, resume)
    state = members.put(state, shardings.members)  # a copy: the steps donate it
    if progress.sums is not None:  # a resumed epoch's sums, restored on the checkpointer's mesh
        progress.sums = members.put(progress.sums, shardings.members)

    compile_start = time.perf_counter()
    key = (*chunks.program_key(plan.student, None if plan.teacher is None else plan.teacher[0], data, config,
                               plan.epochs, state), "members", m, tuple(mesh.shape.items()), tuple(sorted(plan.settings)))
    reused = None if program_cache is None else program_cache.get(key)
    cached = use_teacher_cache(config, guidance)
    scaled = guidance is not None and guidance.use_hidden and guidance.feature_norm != "none"
    teachers = [] if teacher_variables is None else members.unstack(teacher_variables, m)
    forward = None
    if cached or scaled:
        forward = (reused.teacher_forward if reused is not None
                   else compile_teacher_forward(guidance, teachers[0], data.x_train[:batch_size]))
    compile_time = time.perf_counter() - compile_start

    setup_start = time.perf_counter()
    caches = [teacher_cache(guidance, t, data.x_train, batch_size, forward) for t in teachers] if cached else []
    if scaled:
        teachers = [with_feature_scales(guidance, t, data.x_train, batch_size, forward, cache)
                    for t, cache in zip(teachers, caches or [None] * m)]
    inputs = members.MemberInputs(
        teacher=members.put(members.stack(teachers), shardings.members) if teachers else None,
        key=(members.put(members.stack([run_key(seed, plan.level, plan.round) for seed in plan.seeds]),
                            shardings.members) if config.data.augment else None),
        settings=members.put(members.guidance_settings(plan.settings), shardings.members) if guidance else {},
        own=members.put({k: np.stack([c[k] for c in caches]) for k in caches[0]}, shardings.members)
        if caches else {})
    source = members.device_source({"x": data.x_train, "y": data.y_train}, mesh)
    test_source = members.device_source({"x": data.x_test, "y": data.y_test}, mesh)
    test_plan = members.member_plans(len(data.x_test), batch_size, [None])
    test_plan = members.put({k: v[0] for k, v in test_plan.items()}, shardings.test_plan)
    progress.train_time += time.perf_counter() - setup_start

    compile_start = time.perf_counter()
    calls = MemberCalls(plan, data, batch_size, len(data.x_train) // batch_size, reused, inputs, source,
                        test_source, test_plan, shardings)
    if reused is None:
        state = calls.compile(state, tx, guidance, config, mesh, forward)
        if program_cache is not None:
            program_cache.put(key, calls.programs, keep_alive=(plan.student, plan.teacher and plan.teacher[0]))
    calls.health = calls.start_health(progress)
    calls.host = members.fetch({"health": calls.health, "sums": progress.sums, "step": state.step})
    compile_time += time.perf_counter() - compile_start
    return LevelSetup(state, progress, calls, compile_time)


@dataclasses.dataclass
class MemberCalls:
    """Members' calls (sal_jax.level_loop.LevelCalls): a member that goes non-finite stops alone."""

    plan: LevelPlan
    data: ArrayDataset
    batch_size: int
    steps_per_epoch: int
    programs: MemberPrograms | None
    inputs: members.MemberInputs
    source: dict[str, jax.Array]
    test_source: dict[str, jax.Array]
    test_plan: dict[str, jax.Array]
    shardings: members.MemberShardings
    health: dict[str, Any] | None = None
    host: dict[str, Any] | None = None  # the last call's health, sums and steps on the host (`train`)
    plans: dict[str, jax.Array] | None = None  # the epoch's: every member's batches in its own order

    def compile(self, state: TrainState, tx: Any, guidance: Any, config: ml_collections.ConfigDict, mesh: Any,
                forward: Any) -> TrainState:
        """Compiles the training and evaluation programs by running them for zero steps (as
        chunks.compile_level does); returns the state the zero-step call gave back (it donates)."""
        plan = self.plan
        step = members.member_step_fn(plan.student, tx, guidance, augment_images if config.data.augment else None,
                                      config.guidance.schedule, plan.epochs * self.steps_per_epoch)
        one = (members.member(state, 0), members.member(self.inputs, 0))
        batch = {**{k: v[:self.batch_size] for k, v in self.source.items()},
                 **{k: v[0, :self.batch_size] for k, v in self.inputs.own.items()},
                 "weight": jax.numpy.ones((self.batch_size,), jax.numpy.float32)}
        device_loop = not chunks.needs_host_loop(jax.make_jaxpr(step)(*one, batch))
        train_zeros, healthy = members.member_zeros(step, state, self.inputs, self.source, mesh)
        self.programs = MemberPrograms(
            members.make_member_train(step, mesh, device_loop), members.make_member_eval(plan.student, guidance, mesh=mesh),
            train_zeros, healthy, members.eval_zeros(plan.student, guidance, state, self.inputs, self.test_source, mesh),
            forward)
        self.start_epoch(0)
        state, _, _ = self.programs.train(state, self.inputs, self.source, self.plans, 0, 0, train_zeros, healthy)
        self._evaluate(state, 0)
        return state

    def start_health(self, progress: Progress) -> dict[str, Any]:
        """Every member healthy but those frozen before this phase or failed in it before a resume."""
        stopped = np.array([i in self.plan.frozen or str(i) in progress.failures for i in range(len(self.plan.seeds))])
        healthy = self.programs.healthy
        return {**healthy, "step": members.put(np.where(stopped, 0, -1).astype(np.int32), self.shardings.members)}

    def start_epoch(self, epoch: int) -> None:
        orders = members.epoch_orders(len(self.data.x_train), self.plan.seeds, self.plan.level, self.plan.round, epoch)
        plans = members.member_plans(len(self.data.x_train), self.batch_size, orders, self.steps_per_epoch)
        self.plans = members.put(plans, self.shardings.plans)

    def train(self, state: TrainState, progress: Progress, n: int) -> TrainState:
        sums = self.programs.train_zeros if progress.sums is None else progress.sums
        state, progress.sums, self.health = self.programs.train(state, self.inputs, self.source, self.plans,
                                                                progress.step_in_epoch, n, sums, self.health)
        # waits for the call; every process takes part (members may live on several)
        self.host = members.fetch({"health": self.health, "sums": progress.sums, "step": state.step})
        for i in np.flatnonzero(self.host["health"]["step"] >= 0):
            if i not in self.plan.frozen and str(i) not in progress.failures:
                name = f"{self.plan.title}, {member_label(self.plan, int(i))}"
                line = nonfinite_message(name, self.plan.level, self.plan.round,
                                         members.member(self.host["health"], int(i)))
                progress.failures[str(i)] = line
                print(f"warning: member {line}; the other members go on", file=sys.stderr)
        return state

    def epoch_means(self, state: TrainState, progress: Progress) -> dict[str, Any]:
        sums = members.fetch(progress.sums)
        return {f"train_{k}": [float(x) / progress.step_in_epoch for x in v] for k, v in sums.items()}

    def _evaluate(self, state: TrainState, batches: int) -> dict[str, Any]:
        return self.programs.evaluate(state, self.inputs, self.test_source, self.test_plan, 0, batches,
                                      self.programs.eval_zeros)

    def evaluate(self, state: TrainState) -> dict[str, Any]:
        sums = members.fetch(self._evaluate(state, len(self.test_plan["idx"])))
        count = sums.pop("count")
        return {f"test_{k}": [float(x / c) for x, c in zip(v, count)] for k, v in sums.items()}

    def place(self, state: TrainState) -> TrainState:
        return members.put(state, self.shardings.members)

    def level_run(self, plan: LevelPlan, state: TrainState, progress: Progress, compile_time: float) -> LevelRun:
        m = len(plan.seeds)
        last = progress.history[-1] if progress.history else None
        diverged = [last is not None and diverged_ce(last["train_ce"][i], self.data.num_classes,
                                                     f"{plan.title} ({member_label(plan, i)})") for i in range(m)]
        failures = [progress.failures.get(str(i), FROZEN if i in plan.frozen else "") for i in range(m)]
        compiles = {name: getattr(program, "_cache_size", lambda: 1)()  # a host loop has one compiled step
                    for name, program in (("train", self.programs.train), ("eval", self.programs.evaluate))}
        variables = level_variables(state)
        if jax.process_count() > 1:  # members on other processes: every process holds every member's, as one does
            variables = members.fetch(variables)
        return LevelRun(plan.title, plan.level, plan.round, variables, progress.history, progress.train_time,
                        [int(s) for s in members.fetch(state.step)], compiles, compile_time, diverged, failures)

    def host_metrics(self, state: TrainState, progress: Progress) -> tuple[Any, Any]:
        """The members' steps and epoch sums after the last call, on the host (fetched by every process)."""
        return self.host["step"], self.host["sums"]


def member_label(plan: LevelPlan, i: int) -> str:
    """Which member i is: 'seed 3', or with settings of its own 'seed 3, hidden_weight=0.3'."""
    own = "".join(f", {key.split('.')[1]}={values[i]}" for key, values in plan.settings.items())
    return f"seed {plan.seeds[i]}{own}"


def member_run(run: LevelRun, i: int) -> LevelRun:
    """Member i's run of a stacked run: a lone training's record in every field."""
    pick = lambda value: value[i] if isinstance(value, list) else value
    return dataclasses.replace(run, variables=members.member(run.variables, i),
                               history=[{k: pick(v) for k, v in row.items()} for row in run.history],
                               steps=run.steps[i], diverged=run.diverged[i], failure=run.failure[i])
