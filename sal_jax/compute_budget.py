"""The compute-matched baseline's budget: FLOPs of a level's training, counted by XLA, so that a plain
run's length is a function of the configs alone (the time-matched baseline's follows the clock of a shared
machine, and no other machine reproduces it).

What a training's FLOPs are (`LevelRun.flops`): one train step's FLOPs × its steps, plus the frozen
teacher's forward over the training set once per phase when setup runs it (the teacher cache,
sal_jax.teacher_cache, or the feature-norm statistics); without a cache the teacher's forward is inside
the step and counted there. SAL's FLOPs are the sum over its runs; the compute-matched plain baseline
trains floor((SAL's FLOPs − what its phase holds already) / its step's FLOPs) steps (at least one: every
run ends with an evaluated row; `step_budget`).

How a step is counted: `jax.jit(train_step).lower(<abstract arguments on one CPU device>).cost_analysis()`
of ONE lone train step (sal_jax.step.train_step_fn: forward, backward, optimizer update; a member's step
is counted as its lone training's, so members share one step budget). `Lowered.cost_analysis` is XLA's
HLO cost analysis of the program *before* optimisation: the same number whatever the device count (the
arguments are unsharded), the load or the compiler's fusion choices (`Compiled.cost_analysis` counts the
optimised program: on jax 0.10.2's CPU it gave an Adam step 2 FLOPs more than the lowered one). The
lowering is for the CPU platform (the host device), because the CUDA plugin (PJRT C API) has no
`Lowered.cost_analysis`: every backend counts the same CPU lowering. The training loop's `while_loop`
program (sal_jax.chunks) is never analysed: its cost analysis counts a loop body once, or not at all.

XLA counts a dot as 2·M·N·K and an elementwise op as one FLOP per element; a masked dense matmul (a
sparse SET level, sal_jax.models.sparse) is counted as dense, and a frozen GLAI level's value step as
its dense matmuls times the cached gates. Not counted: the epoch work of the families (a GLAI structure
monitor's probe pass, its gate cache at the freeze, a sparse level's evolution and pruning), evaluation,
gradient diagnostics, and data movement (gathering a batch).
"""
from __future__ import annotations

import dataclasses
import json
import math
import weakref
from typing import TYPE_CHECKING, Any, Callable, Sequence

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from sal_jax import chunks, families
from sal_jax.config import flat_config
from sal_jax.data.arrays import ArrayDataset
from sal_jax.data.images import augment_images
from sal_jax.guidance import Guidance
from sal_jax.levels import host_device
from sal_jax.losses import feature_scales
from sal_jax.members import member
from sal_jax.records import LevelRun
from sal_jax.step import FEATURE_SCALES, TEACHER_LOGITS, level_variables, teacher_feature_key, teacher_outputs, train_step_fn

if TYPE_CHECKING:
    from sal_jax.level_loop import LevelPlan


@dataclasses.dataclass(frozen=True)
class LevelFlops:
    """What one training of a level costs, in FLOPs (XLA's count; integers)."""

    step: int           # one train step of one training (a member's alone)
    teacher_pass: int   # the frozen teacher over the training set, once per phase (0: no such pass)


def xla_flops(fn: Callable, *abstract_args: Any) -> int:
    """FLOPs of `fn` on abstract arguments: XLA's cost analysis of the lowered, unoptimised program
    (see the module's docstring); `Compiled.cost_analysis` only where there is no lowered one (no CPU
    backend)."""
    lowered = jax.jit(fn).lower(*abstract_args)
    cost = lowered.cost_analysis()
    if cost is None:
        cost = lowered.compile().cost_analysis()
        cost = cost[0] if isinstance(cost, (list, tuple)) else cost
    return int(round(float((cost or {}).get("flops", 0.0))))


def abstract(tree: Any, device: jax.Device | None) -> Any:
    """Shapes and dtypes of a pytree's arrays, on `device` (unsharded), for `xla_flops`."""
    sharding = None if device is None else jax.sharding.SingleDeviceSharding(device)
    return jax.tree.map(lambda a: jax.ShapeDtypeStruct(np.shape(a), jnp.result_type(a), sharding=sharding,
                                                       weak_type=getattr(a, "weak_type", False)), tree)


def lone_plan(plan: LevelPlan) -> LevelPlan:
    """The lone training of members' first member (its step is every member's: settings that members may
    have of their own change no program)."""
    if not plan.seeds:
        return plan
    first = lambda tree: None if tree is None else member(tree, 0)
    teacher = None if plan.teacher is None else (plan.teacher[0], first(plan.teacher[1]))
    return dataclasses.replace(plan, teacher=teacher, start_from=first(plan.start_from), seeds=(), frozen=(),
                               settings={})


def level_flops(plan: LevelPlan, data: ArrayDataset, config: ml_collections.ConfigDict,
                program_cache: chunks.ProgramCache | None = None) -> LevelFlops:
    """The FLOPs of `plan`'s training step and teacher pass (see the module's docstring). Abstract: nothing
    runs; tracing and lowering a step take 0.1-0.3 s (the digits main job's levels), so the count is kept
    with `program_cache` (as long as it lives, beside the level's compiled programs, under the programs'
    key, sal_jax.chunks.program_key): another seed or baseline of the same program reuses it."""
    from sal_jax.level_loop import initial_state  # the level loop imports this module

    lone = lone_plan(plan)
    counts = {} if program_cache is None else _COUNTS.setdefault(program_cache, {})
    # what the abstract initial state depends on: a later seed or baseline of the same level finds its
    # count without tracing the initialisation again (0.1 s for a GRU level: as long as a reused program's
    # whole setup)
    shapes = lambda tree: repr(jax.tree.map(lambda a: (np.shape(a), str(np.asarray(a).dtype)), tree))
    plain = (id(lone.student), None if lone.teacher is None else id(lone.teacher[0]), lone.level, lone.epochs,
             data.x_train.shape, str(data.x_train.dtype), shapes(lone.start_from),
             json.dumps({k: v for k, v in flat_config(config).items() if k != "seed"}, sort_keys=True, default=str),
             config.seed if config.data.augment else None)
    if plain in counts:
        return counts[plain][0]
    made: dict[str, Any] = {}

    def init() -> Any:
        made["guidance"], made["tx"], state = initial_state(lone, data, config)
        return state

    state = jax.eval_shape(init)
    teacher = None if lone.teacher is None else lone.teacher[0]
    key = chunks.program_key(lone.student, teacher, data, config, lone.epochs, state)
    if key not in counts:
        # the modules are kept with the count: the key holds their id()s, which no other object may take
        counts[key] = (_count(lone, data, config, made["guidance"], made["tx"], state), (lone.student, teacher))
    counts[plain] = counts[key]
    return counts[key][0]


# The counts of each ProgramCache's programs, {key: (LevelFlops, the modules the key names)}, dropped with it.
_COUNTS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _count(plan: LevelPlan, data: ArrayDataset, config: ml_collections.ConfigDict, guidance: Guidance | None,
           tx: Any, state: Any) -> LevelFlops:
    """Lowers one train step (and the teacher's forward, when setup runs it over the training set) on the
    host CPU device and counts their FLOPs."""
    from sal_jax.level_loop import run_key, use_teacher_cache

    device, batch_size = host_device(), config.train.batch_size
    x = abstract(data.x_train[:batch_size], device)
    teacher = None if plan.teacher is None else abstract(plan.teacher[1], device)
    batch = {"x": x, "y": abstract(np.zeros(batch_size, np.int32), device),
             "weight": abstract(np.zeros(batch_size, np.float32), device)}
    cached = use_teacher_cache(config, guidance)
    scaled = guidance is not None and guidance.use_hidden and guidance.feature_norm != "none"
    teacher_pass = 0
    if cached or scaled:
        outputs = jax.eval_shape(lambda v, inputs: teacher_outputs(guidance, v, {"x": inputs}), teacher, x)
        forward = xla_flops(lambda v, inputs: teacher_outputs(guidance, v, {"x": inputs}), teacher, x)
        teacher_pass = forward * -(-len(data.x_train) // batch_size)  # its batches, the last one padded
        if cached:
            batch[TEACHER_LOGITS] = outputs[0]
            batch.update({teacher_feature_key(j): f for j, f in outputs[1].items()})
        if scaled:
            teacher = {**teacher, FEATURE_SCALES: abstract(_scale_shapes(outputs[1], guidance.feature_norm), device)}
    extra = families.batch_cache(plan.student, plan.start_from if plan.start_from is not None
                                 else level_variables(state), data.x_train[:batch_size], batch_size)
    batch.update(abstract(extra, device))
    augment = augment_images if config.data.augment else None
    with jax.default_device(device):  # the augmentation key too: a constant of the CPU program
        step = train_step_fn(plan.student, tx, guidance, augment, run_key(config.seed, plan.level, plan.round))
        return LevelFlops(xla_flops(step, abstract(state, device), teacher, batch), teacher_pass)


def _scale_shapes(features: dict[int, Any], norm: str) -> dict[int, np.ndarray]:
    """Arrays shaped like the feature-norm divisors of `features` (their values do not change a FLOP)."""
    ones = {j: np.ones(f.shape[-1]) for j, f in features.items()}
    return feature_scales(ones, {j: 1 for j in features}, norm)


def start_of(continue_from: LevelRun | None) -> tuple[int, int]:
    """(steps, FLOPs) a phase holds before its first step: those of the earlier part it continues (a GLAI
    level's structure phase), else none."""
    if continue_from is None:
        return 0, 0
    return shared_steps(continue_from.steps), continue_from.flops or 0


def shared_steps(steps: int | Sequence[int]) -> int:
    """A run's steps: members' are a list, equal for every member that trained to the end (one that
    failed stopped earlier): their largest."""
    return int(np.max(steps))


def step_budget(flop_budget: int, flops: LevelFlops, continue_from: LevelRun | None = None) -> int:
    """The step count at which a compute-matched training stops: its start's steps plus
    floor((flop_budget − its start's FLOPs − its teacher pass) / its step's FLOPs), rounded down (it never
    spends more than the budget by a whole step), and at least one step for a training that starts from
    nothing."""
    start_steps, start_flops = start_of(continue_from)
    left = flop_budget - start_flops - flops.teacher_pass
    steps = start_steps + max(0, left // max(flops.step, 1))
    return max(steps, 1) if continue_from is None else steps


def with_flops(run: LevelRun, flops: LevelFlops, continue_from: LevelRun | None = None,
               flop_budget: int | None = None, steps: int | None = None) -> LevelRun:
    """`run` with its FLOPs (its step's, and its training's in total, an earlier part's included) and, for a
    compute-matched training, its budget in FLOPs and steps."""
    start_steps, start_flops = start_of(continue_from)
    total = start_flops + flops.step * (shared_steps(run.steps) - start_steps) + flops.teacher_pass
    return dataclasses.replace(run, step_flops=flops.step, flops=total, flop_budget=flop_budget, step_budget=steps)


def sal_flops(runs: Sequence[LevelRun]) -> int:
    """The FLOPs of SAL's runs (a GLAI structure phase's are in the run that continues it: leave it out)."""
    missing = [run.name for run in runs if run.flops is None]
    if missing:
        raise ValueError(f"{', '.join(missing)}: no FLOP count (trained before FLOPs were counted, e.g. resumed "
                         "from an older checkpoint); set config.baselines.compute_matched = False")
    return sum(run.flops for run in runs)


def ceil_epochs(steps: int, steps_per_epoch: int) -> int:
    """Epochs that `steps` steps reach (the last one possibly partial)."""
    return math.ceil(steps / max(steps_per_epoch, 1))
