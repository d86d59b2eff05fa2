"""Many members of one level in one compiled program: independent trainings stacked on a leading axis.

A *member* is one training of a level that the lone path (sal_jax.chunks) would run on its own: its own
initial weights (from its seed), its own epoch order, its own augmentation key, its own teacher (the
same member's level above) and its own settings. Stacking M members on a leading axis of every array and
`jax.vmap`-ing the lone train step over them makes each of the step's small kernels serve all M at once:
what makes an accelerator (or a CPU's cores) pay off for small models.

Members never talk to each other: the program holds no reduction over the member axis, so the
`ensemble` mesh axis, which splits the members over devices, adds no communication to the step. A
member whose loss or gradient goes non-finite is frozen (its updates masked from that step on) and
reported with its step and metrics (`health`); the others go on.

Numbers: a member's results equal its lone run's to float32 rounding, not bit for bit (a batched matmul
sums in another order than M single ones); the same members run twice give the same bits.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any, Callable, Sequence, TypeVar

import flax.linen as nn
import flax.struct
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from jax.experimental import multihost_utils
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec as P

from sal_jax.chunks import finite
from sal_jax.data.arrays import batch_indices, epoch_order
from sal_jax.config import flat_config
from sal_jax.errors import ConfigError, is_number
from sal_jax.guidance import Guidance, weight_schedule
from sal_jax.levels import Variables, host_device
from sal_jax.optimizers import ADAMW_WEIGHT_DECAY, OPTIMIZERS, weight_decay
from sal_jax.parallel import DATA
from sal_jax.step import Augment, Batch, Metrics, TrainState, eval_step_fn, init_state, train_step_fn

ENSEMBLE = "ensemble"
T = TypeVar("T")
Settings = dict[str, jax.Array]  # per-member values of GUIDANCE_SETTINGS, each of shape (M,)
GUIDANCE_SETTINGS = ("hidden_weight", "output_weight", "temperature")
# The config values that may differ between the members of one program: data of the step (the guidance's
# weights and temperature, the optimizer's hyperparameters), not constants compiled into it. A λ of 0
# is the exception: the term is then not computed at all, so members agree on which λ are 0.
MEMBER_SETTINGS = ("guidance.hidden_weight", "guidance.output_weight", "guidance.temperature",
                   "train.learning_rate", "train.weight_decay")
OPTIMIZER_SETTINGS = ("train.learning_rate", "train.weight_decay")


# -- the member axis -------------------------------------------------------------------------------
def stack(trees: Sequence[T]) -> T:
    """One pytree whose every leaf is the members' leaves stacked on a new leading axis."""
    return jax.tree.map(lambda *leaves: jnp.stack(leaves), *trees)


def member(tree: T, i: int) -> T:
    """Member i of a stacked pytree."""
    return jax.tree.map(lambda leaf: leaf[i], tree)


def unstack(tree: T, m: int) -> list[T]:
    """The m members of a stacked pytree, in order."""
    return [member(tree, i) for i in range(m)]


def _where(mask: jax.Array, new: T, old: T) -> T:
    """Per member: `new` where mask (shape (M,)) is true, else `old`; leaves of any rank."""
    return jax.tree.map(lambda n, o: jnp.where(mask.reshape(mask.shape + (1,) * (n.ndim - 1)), n, o), new, old)


# -- members' optimizers, initial states and settings --------------------------------------------------
def member_optimizer(train: ml_collections.ConfigDict) -> optax.GradientTransformation:
    """sal_jax.optimizers.make_optimizer's optimizer with its learning rate (and adamw's weight decay) held
    in its state (`optax.inject_hyperparams`), so that each member's may differ: data, not constants of the
    program."""
    name = train.optimizer
    if name == "adamw":
        return optax.inject_hyperparams(lambda learning_rate, weight_decay: optax.adamw(
            learning_rate, weight_decay=weight_decay))(train.learning_rate, weight_decay(train))
    return optax.inject_hyperparams(lambda learning_rate: OPTIMIZERS[name](learning_rate))(train.learning_rate)


def initial_states(student: nn.Module, tx: optax.GradientTransformation, sample_x: np.ndarray,
                   seeds: Sequence[int], level: int, guidance: Guidance | None = None) -> TrainState:
    """The members' initial states, stacked: member i's is a lone run's of seed seeds[i] (the same key,
    fold_in(key(seed), level), initialised op by op on the CPU as the level loop's setup does: the same bits)."""
    with jax.default_device(host_device()):
        x = jnp.asarray(sample_x)
        return stack([init_state(student, tx, jax.random.fold_in(jax.random.key(seed), level), x, guidance)
                      for seed in seeds])


def with_hyperparams(states: TrainState, **values: Sequence[float]) -> TrainState:
    """`states` with per-member optimizer settings (those a `member_optimizer` holds: learning_rate, and
    weight_decay for adamw), e.g. learning_rate=[1e-3, 3e-3]: one value per member."""
    opt_state = states.opt_state
    hyperparams = dict(opt_state.hyperparams)
    for name, value in values.items():
        if name not in hyperparams:
            raise ConfigError(f"members: the optimizer has no setting {name!r}; it has {sorted(hyperparams)}")
        old = hyperparams[name]
        hyperparams[name] = jax.device_put(jnp.asarray(value, old.dtype).reshape(old.shape), old.sharding)
    return states.replace(opt_state=opt_state._replace(hyperparams=hyperparams))


MemberSettings = dict[str, tuple]  # a MEMBER_SETTINGS key -> one value per member
_LOWEST = {"guidance.hidden_weight": (0.0, True), "guidance.output_weight": (0.0, True),  # (bound, bound allowed)
           "guidance.temperature": (0.0, False), "train.learning_rate": (0.0, False), "train.weight_decay": (0.0, True)}


def split_members(configs: Sequence[ml_collections.ConfigDict]) -> tuple[ml_collections.ConfigDict, tuple[int, ...],
                                                                          MemberSettings]:
    """(the program's config, the members' seeds, their settings) for trainings `configs`, one per member,
    each with its seed: the program's config is the first's, the settings are the MEMBER_SETTINGS whose
    values differ between members. One line if the configs differ in anything else (that changes the program)."""
    flat = [flat_config(c) for c in configs]
    for i, other in enumerate(flat[1:], 1):
        differ = sorted(k for k in flat[0].keys() | other.keys()
                        if k != "seed" and k not in MEMBER_SETTINGS and flat[0].get(k) != other.get(k))
        if differ:
            raise ConfigError(f"members: training {i} differs from training 0 in {', '.join(differ)}: only the seed "
                              f"and {', '.join(MEMBER_SETTINGS)} may differ between the members of one program")
    settings = {k: tuple(f.get(k) for f in flat) for k in MEMBER_SETTINGS if len({repr(f.get(k)) for f in flat}) > 1}
    check_member_settings(configs[0], settings, len(configs))
    return configs[0], tuple(int(f["seed"]) for f in flat), settings


def check_member_settings(config: ml_collections.ConfigDict, settings: MemberSettings, m: int) -> None:
    """Per-member settings are MEMBER_SETTINGS, one valid value per member, and zero where the program's
    config has that λ zero (a λ of 0 leaves its term out of the program): one line if not."""
    for key, values in settings.items():
        if key not in MEMBER_SETTINGS:
            raise ConfigError(f"members: {key!r} cannot differ between members; these can: {', '.join(MEMBER_SETTINGS)}")
        if len(values) != m:
            raise ConfigError(f"members: {key} has {len(values)} values for {m} members")
        bound, allowed = _LOWEST[key]
        for i, value in enumerate(values):
            if value is None and key == "train.weight_decay":
                continue
            if not is_number(value) or not (value >= bound if allowed else value > bound):
                raise ConfigError(f"members: config.{key} of member {i} must be a number "
                                  f"{'>=' if allowed else '>'} {bound:g}, got {value!r}")
        if key in ("guidance.hidden_weight", "guidance.output_weight"):
            zero = config[key.split(".")[0]][key.split(".")[1]] == 0
            if any((value == 0) != zero for value in values):
                raise ConfigError(f"members: config.{key} is 0 for some members and not for others; a λ of 0 "
                                  "leaves its term out of the program: train those in programs of their own")
    if "train.weight_decay" in settings and config.train.optimizer != "adamw":
        raise ConfigError("members: config.train.weight_decay differs between members but only adamw decays weights")


def settings_states(states: TrainState, settings: MemberSettings) -> TrainState:
    """`states` (stacked, of a `member_optimizer`) with the members' optimizer settings (learning rate,
    adamw's weight decay; None: optax's default)."""
    values = {key.split(".")[1]: [ADAMW_WEIGHT_DECAY if v is None else v for v in settings[key]]
              for key in OPTIMIZER_SETTINGS if key in settings}
    return with_hyperparams(states, **values) if values else states


def guidance_settings(settings: MemberSettings) -> dict[str, np.ndarray]:
    """The members' GUIDANCE_SETTINGS (MemberInputs.settings) of `settings`, as float32 arrays of shape (M,)."""
    return {key.split(".")[1]: np.asarray(values, np.float32) for key, values in settings.items()
            if key.startswith("guidance.")}


def member_guidance(guidance: Guidance | None, settings: Settings, schedule: str, total_steps: int
                    ) -> Guidance | None:
    """One member's guidance: `guidance` with the member's λ_h, λ_o (on the config's `schedule` over
    `total_steps`, as sal_jax.guidance.make_guidance builds them) and T from `settings`, traced values;
    `guidance` itself without settings. Which terms are computed stays the guidance's (a member with λ = 0
    computes its term and weighs it 0: the λ = 0 ablations are programs of their own)."""
    if guidance is None or not settings:
        return guidance
    unknown = set(settings) - set(GUIDANCE_SETTINGS)
    if unknown:
        raise ConfigError(f"members: unknown guidance settings {sorted(unknown)}; choose from {list(GUIDANCE_SETTINGS)}")
    changes: dict[str, Any] = {name: weight_schedule(settings[name], schedule, total_steps)
                               for name in ("hidden_weight", "output_weight") if name in settings}
    if "temperature" in settings:
        changes["temperature"] = settings["temperature"]
    return dataclasses.replace(guidance, **changes)


# -- what each member reads ----------------------------------------------------------------------------
@flax.struct.dataclass
class MemberInputs:
    """What each member has of its own besides its state, stacked: arguments of the programs, not donated."""

    teacher: Variables | None = None  # its teacher's variables (the same member's level above); None: unguided
    key: jax.Array | None = None      # its augmentation key (run_key of its seed, level, round); None: no augmentation
    settings: Settings = flax.struct.field(default_factory=dict)  # its GUIDANCE_SETTINGS ({}: the guidance's)
    # per-example arrays of its own, (M, N, ...), gathered with its batches beside the shared source (its
    # teacher's cached outputs, sal_jax.teacher_cache); a key the source has too is the member's own
    own: dict[str, jax.Array] = flax.struct.field(default_factory=dict)


def epoch_orders(num_examples: int, seeds: Sequence[int], level: int, round_: int, epoch: int) -> list[np.ndarray]:
    """Each member's example order of one epoch: the lone run's of its seed (sal_jax.data.arrays.epoch_order)."""
    return [epoch_order(num_examples, seed, level, round_, epoch) for seed in seeds]


def member_plans(num_examples: int, batch_size: int, orders: Sequence[np.ndarray | None],
                 num_batches: int | None = None) -> dict[str, np.ndarray]:
    """{"idx", "weight"} of shape (M, num_batches, batch_size): member i's batches in orders[i] (None:
    stored order), as the lone path's plan of a whole pass (sal_jax.parallel.SplitBatches); a training
    pass gives num_batches = the full batches only (the ragged remainder dropped)."""
    def plan(order):
        pairs = list(batch_indices(num_examples, batch_size, order))[:num_batches]
        return np.stack([p[0] for p in pairs]).astype(np.int32), np.stack([p[1] for p in pairs])
    idx, weight = zip(*map(plan, orders))
    return {"idx": np.stack(idx), "weight": np.stack(weight)}


# -- devices ---------------------------------------------------------------------------------------------
def member_mesh_shape(m: int, parallel: ml_collections.ConfigDict, num_devices: int) -> tuple[int, int]:
    """(ensemble, data) for m members: each member's batch over config.parallel.data devices when it is set
    (-1, the default: 1, the devices are the members'), the members over as many of the remaining groups
    of devices as divide their number (every device of the axis holds as many members)."""
    data = parallel.data if parallel.data > 0 else 1
    if num_devices % data:
        raise ConfigError(f"config.parallel.data: {data} does not divide the {num_devices} devices (members: "
                          f"each member's batch over {data} devices, the members over the rest)")
    return math.gcd(m, num_devices // data), data


def make_member_mesh(ensemble: int, data: int = 1, devices: Sequence[jax.Device] | None = None) -> Mesh:
    """An (ENSEMBLE, DATA) mesh: members split over `ensemble` devices, each member's batch over `data`."""
    devices = jax.devices() if devices is None else devices
    if ensemble * data > len(devices):
        raise ConfigError(f"members: a mesh of ensemble={ensemble} x data={data} needs {ensemble * data} devices, "
                          f"{len(devices)} available")
    return jax.make_mesh((ensemble, data), (ENSEMBLE, DATA), axis_types=(AxisType.Auto, AxisType.Auto),
                         devices=devices[:ensemble * data])


@dataclasses.dataclass(frozen=True)
class MemberShardings:
    members: NamedSharding     # every per-member array: its leading (member) axis over ENSEMBLE
    plans: NamedSharding       # training plans (M, rows, batch): members over ENSEMBLE, batch over DATA
    test_plan: NamedSharding   # a plan all members read (rows, batch): batch over DATA
    replicated: NamedSharding  # the shared source, and the scalars


def member_shardings(mesh: Mesh) -> MemberShardings:
    return MemberShardings(NamedSharding(mesh, P(ENSEMBLE)), NamedSharding(mesh, P(ENSEMBLE, None, DATA)),
                           NamedSharding(mesh, P(None, DATA)), NamedSharding(mesh, P()))


def check_members(m: int, mesh: Mesh | None) -> None:
    """Every device of the ensemble axis holds as many members."""
    if mesh is not None and m % mesh.shape[ENSEMBLE]:
        raise ConfigError(f"members: {m} members do not split evenly over the {mesh.shape[ENSEMBLE]} devices "
                          f"of the {ENSEMBLE!r} mesh axis")


# -- the programs ------------------------------------------------------------------------------------------
MemberStep = Callable[[TrainState, MemberInputs, Batch], tuple[TrainState, Metrics]]


def member_step_fn(student: nn.Module, tx: optax.GradientTransformation, guidance: Guidance | None = None,
                   augment: Augment | None = None, schedule: str = "constant", total_steps: int = 1) -> MemberStep:
    """step(state, inputs, batch) -> (state, metrics) of ONE member (unstacked): sal_jax.step's train step
    with the member's augmentation key and, when inputs.settings has any, its guidance settings
    (`member_guidance`; `schedule` and `total_steps` as the level's make_guidance had them)."""
    def step(state: TrainState, inputs: MemberInputs, batch: Batch) -> tuple[TrainState, Metrics]:
        guided = member_guidance(guidance, inputs.settings, schedule, total_steps)
        return train_step_fn(student, tx, guided, augment, inputs.key)(state, inputs.teacher, batch)
    return step


def _gather(source: dict[str, jax.Array], own: dict[str, jax.Array], idx: jax.Array, weight: jax.Array) -> Batch:
    """One member's batch: its rows of the shared source and of its own arrays (as SplitBatches gathers)."""
    return {**{k: a[idx] for k, a in source.items()}, **{k: a[idx] for k, a in own.items()}, "weight": weight}


def _vmap(fn: Callable, in_axes: tuple, mesh: Mesh | None) -> Callable:
    # spmd_axis_name: the sharding constraints inside (a member's batch over DATA) keep the member axis on ENSEMBLE
    return jax.vmap(fn, in_axes=in_axes, spmd_axis_name=None if mesh is None else ENSEMBLE)


def _constrain(batch: Batch, mesh: Mesh | None) -> Batch:
    return batch if mesh is None else jax.lax.with_sharding_constraint(batch, NamedSharding(mesh, P(DATA)))


def _freeze(ok: jax.Array, new: TrainState, old: TrainState) -> TrainState:
    """`new`, but the members not `ok` keep their old step, parameters and BatchNorm statistics. Their
    optimizer state runs on: a frozen member never trains again at this level (a next round starts a fresh
    optimizer state), and selecting it too cost the 16x64 MLP's step 53 more copies of the loop's state
    (XLA cannot update the moments in place while the old ones are still to be selected): 20-30% of a
    CPU step (benchmarks/member_kernels.py)."""
    kept = _where(ok, (new.step, new.params, new.batch_stats), (old.step, old.params, old.batch_stats))
    return new.replace(step=kept[0], params=kept[1], batch_stats=kept[2])


# (states, inputs, source, plans, offset, n, sums, health) -> (states, sums, health); see make_member_train
MemberTrain = Callable[..., tuple[TrainState, Metrics, dict[str, Any]]]
MemberEval = Callable[..., Metrics]


def make_member_train(step: MemberStep, mesh: Mesh | None = None, device_loop: bool = True) -> MemberTrain:
    """train(states, inputs, source, plans, offset, n, sums, health) -> (states, sums, health): every member
    runs the steps on its plan rows offset..offset+n (`member_plans`), batches gathered on the device from
    the shared `source` ({"x", "y"}, replicated) and inputs.own; the states are donated.

    sums: per-member metric sums (`member_zeros`), each step's added while the member is healthy.
    health: {"step": (M,) int32, -1 while the member is healthy, else the step (count of its steps before
    it) where its metrics (loss terms, gradient norms) first went non-finite; "metrics": that step's
    metrics}. A member with step >= 0 is frozen: its step, parameters and BatchNorm statistics stay those
    from before the bad step (its optimizer state does not: `_freeze`), in this call and every later one
    that is given this health; the others go on.

    device_loop: all n steps in one compiled call (a loop with n a traced argument, so one program for any
    n). Else one compiled step dispatched n times, for XLA:CPU with convolutions (sal_jax.chunks.needs_host_loop).
    With `mesh` (`make_member_mesh`): members split over ENSEMBLE, each member's batch over DATA.
    """
    vmapped = _vmap(lambda state, inputs, source, idx, weight: step(
        state, inputs, _constrain(_gather(source, inputs.own, idx, weight), mesh)), (0, 0, None, 0, 0), mesh)

    def advance(states, inputs, source, plans, row, sums, health):
        new, metrics = vmapped(states, inputs, source, plans["idx"][:, row], plans["weight"][:, row])
        healthy = health["step"] < 0
        ok = healthy & jax.vmap(finite)(metrics)  # per member: no reduction over the member axis
        failed = healthy & ~ok
        zeros = jax.tree.map(jnp.zeros_like, metrics)
        health = {"step": jnp.where(failed, states.step, health["step"]),
                  "metrics": _where(failed, metrics, health["metrics"])}
        return _freeze(ok, new, states), jax.tree.map(jnp.add, sums, _where(ok, metrics, zeros)), health

    def compiled(fn: Callable, scalars: int) -> Callable:  # fn(states, inputs, source, plans, <scalars>, sums, health)
        if mesh is None:
            return jax.jit(fn, donate_argnums=0)
        s = member_shardings(mesh)
        return jax.jit(fn, donate_argnums=0, out_shardings=(s.members,) * 3,
                       in_shardings=(s.members, s.members, s.replicated, s.plans, *[s.replicated] * scalars,
                                     s.members, s.members))

    if not device_loop:
        one_step = compiled(advance, 1)

        def host_loop(states, inputs, source, plans, offset, n, sums, health):
            for i in range(n):
                states, sums, health = one_step(states, inputs, source, plans, offset + i, sums, health)
            return states, sums, health
        return host_loop

    def train(states, inputs, source, plans, offset, n, sums, health):
        body = lambda i, carry: advance(carry[0], inputs, source, plans, offset + i, *carry[1:])
        # the loop's condition reads i and n only: a member axis split over devices needs no communication
        return jax.lax.fori_loop(0, n, body, (states, sums, health))
    return compiled(train, 2)


def make_member_eval(student: nn.Module, guidance: Guidance | None = None, schedule: str = "constant",
                     total_steps: int = 1, mesh: Mesh | None = None) -> MemberEval:
    """evaluate(states, inputs, source, plan, offset, n, sums) -> sums: every member's eval-step sums
    (sal_jax.step.eval_step_fn: inference mode, padding weighted 0, with "count") over rows offset..offset+n
    of one `plan` that all members read (e.g. a test split in stored order), added to `sums` (per member)."""
    def one_member(state, inputs, batch):
        guided = member_guidance(guidance, inputs.settings, schedule, total_steps)
        return eval_step_fn(student, guided)(state, inputs.teacher, batch)
    vmapped = _vmap(one_member, (0, 0, None), mesh)

    def evaluate(states, inputs, source, plan, offset, n, sums):
        def body(i, sums):
            batch = _constrain(_gather(source, {}, plan["idx"][offset + i], plan["weight"][offset + i]), mesh)
            return jax.tree.map(jnp.add, sums, vmapped(states, inputs, batch))
        return jax.lax.fori_loop(0, n, body, sums)

    if mesh is None:
        return jax.jit(evaluate)
    s = member_shardings(mesh)
    return jax.jit(evaluate, in_shardings=(s.members, s.members, s.replicated, s.test_plan, s.replicated,
                                           s.replicated, s.members), out_shardings=s.members)


def member_zeros(step: MemberStep, states: TrainState, inputs: MemberInputs, source: dict[str, Any],
                 mesh: Mesh | None = None) -> tuple[Metrics, dict[str, Any]]:
    """(sums, health) where a pass starts: zeros shaped like the members' metrics, and every member healthy."""
    m = len(states.step)
    check_members(m, mesh)
    row = {"idx": jax.ShapeDtypeStruct((m, 1), jnp.int32), "weight": jax.ShapeDtypeStruct((m, 1), jnp.float32)}
    _, metrics = jax.eval_shape(
        _vmap(lambda state, inputs, idx, weight: step(state, inputs, _gather(source, inputs.own, idx, weight)),
              (0, 0, 0, 0), None), states, inputs, row["idx"], row["weight"])
    zeros = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), metrics)
    out = zeros, {"step": jnp.full((m,), -1, jnp.int32), "metrics": zeros}
    return out if mesh is None else put(out, member_shardings(mesh).members)


def eval_zeros(student: nn.Module, guidance: Guidance | None, states: TrainState, inputs: MemberInputs,
               source: dict[str, Any], mesh: Mesh | None = None) -> Metrics:
    """Zeros shaped like `make_member_eval`'s per-member sums."""
    batch = {**{k: jax.ShapeDtypeStruct((1, *a.shape[1:]), a.dtype) for k, a in source.items()},
             "weight": jax.ShapeDtypeStruct((1,), jnp.float32)}
    sums = jax.eval_shape(jax.vmap(lambda state, inputs, batch: eval_step_fn(student, guidance)(
        state, inputs.teacher, batch), in_axes=(0, 0, None)), states, inputs, batch)
    zeros = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), sums)
    return zeros if mesh is None else put(zeros, member_shardings(mesh).members)


def put(tree: T, sharding: jax.sharding.Sharding) -> T:
    """`tree` laid out by `sharding`, always a copy (the member programs donate their states). Over several
    processes every process passes the same values and keeps the shards of its devices (device_put takes
    only this process's devices); PRNG key arrays travel as their key data."""
    if jax.process_count() == 1:
        return jax.device_put(tree, sharding, may_alias=False)

    def one(leaf: Any) -> jax.Array:
        if jnp.issubdtype(getattr(leaf, "dtype", None), jax.dtypes.prng_key):
            return jax.random.wrap_key_data(one(jax.random.key_data(leaf)), impl=jax.random.key_impl(leaf))
        if isinstance(leaf, jax.Array) and not leaf.is_fully_addressable and not leaf.is_fully_replicated:
            return jax.device_put(leaf, sharding, may_alias=False)  # already global: a reshard
        value = np.asarray(jax.device_get(leaf) if isinstance(leaf, jax.Array) else leaf)
        return jax.make_array_from_callback(value.shape, sharding, lambda index: value[index])
    return jax.tree.map(one, tree)


def fetch(tree: T) -> T:
    """A pytree's values on the host. Members on several processes' devices are gathered from all of them
    (a collective: every process calls it at the same point); one process reads its own."""
    if jax.process_count() == 1:
        return jax.device_get(tree)
    return multihost_utils.process_allgather(tree, tiled=True)


def device_source(arrays: dict[str, np.ndarray], mesh: Mesh | None = None) -> dict[str, jax.Array]:
    """A split's arrays ({"x", "y"}, labels as int32 as SplitBatches keeps them) on every device, once."""
    arrays = {**arrays, "y": np.asarray(arrays["y"], np.int32)}
    return jax.device_put(arrays) if mesh is None else put(arrays, member_shardings(mesh).replicated)
