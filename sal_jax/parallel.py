"""One train step from one device to many hosts: the device mesh, shardings and global batches.

The mesh has two axes, ("data", "fsdp"), built from `config.parallel`:
  * every global batch is split along its first dimension over *all* mesh devices (both axes), so each
    device computes on batch_size / N examples and XLA all-reduces the gradients;
  * with fsdp = 1 everything else (student params, optimizer state, BatchNorm statistics, the frozen
    teacher's variables, metrics) is replicated;
  * with fsdp > 1 each array of at least FSDP_MIN_SIZE elements is split over the "fsdp" axis along its
    largest dimension divisible by fsdp (the first such, on ties), and replicated over "data"; smaller
    arrays (biases, scalars, norms) are replicated. The rule only looks at shapes, so a parameter and
    its Adam moments always share a layout, and a checkpoint restores onto any mesh.

Several processes (hosts) form one mesh over all their devices after `initialize_distributed`; each
process then builds only its own rows of every global batch, in the same global order as one process.
One process with a small split keeps it on the devices and gathers batches there (`SplitBatches`).
"""
from __future__ import annotations

import dataclasses
import itertools
import os
from typing import Any, TypeVar

import jax
import ml_collections
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec as P

from sal_jax.data.arrays import batch_indices, batches
from sal_jax.errors import ConfigError, first_line, is_integer

DATA, FSDP = "data", "fsdp"
BATCH_AXES = (DATA, FSDP)  # the batch dimension is split over every device of the mesh
T = TypeVar("T", bool, int)
FSDP_MIN_SIZE = 1024       # smaller arrays stay replicated: splitting them saves little and costs a gather


# -- processes -------------------------------------------------------------------------------------
def initialize_distributed(parallel: ml_collections.ConfigDict) -> bool:
    """Joins a multi-process run if there is one; returns whether this is one. Call once, first thing.

    num_processes = 1: single process, nothing is initialized. Otherwise the config's fields that are set
    (coordinator_address != "", num_processes > 0, process_id >= 0) go to `jax.distributed.initialize`,
    which fills the rest from $JAX_COORDINATOR_ADDRESS and its cluster detection (Slurm, Open MPI, Cloud
    TPU, Kubernetes). With nothing set and no cluster detected, this is a single-process run.
    """
    _check_process_fields(parallel)
    if parallel.num_processes == 1:
        return False
    given = {"coordinator_address": parallel.coordinator_address or None,
             "num_processes": parallel.num_processes or None,
             "process_id": parallel.process_id if parallel.process_id >= 0 else None}
    try:
        jax.distributed.initialize(**given)
    except ValueError as error:
        # JAX's own words when neither the arguments, the environment nor a cluster give a coordinator.
        nothing_asked = all(v is None for v in given.values()) and "JAX_COORDINATOR_ADDRESS" not in os.environ
        if nothing_asked and str(error).startswith("coordinator_address should be defined"):
            return False
        reason = first_line(error)
        raise ConfigError(f"config.parallel: jax.distributed.initialize failed: {reason}") from error
    return True


def _check_process_fields(parallel: ml_collections.ConfigDict) -> None:
    if not isinstance(parallel.coordinator_address, str):
        raise ConfigError(f"config.parallel.coordinator_address: must be 'host:port' or '', "
                          f"got {parallel.coordinator_address!r}")
    if not is_integer(parallel.num_processes) or parallel.num_processes < 0:
        raise ConfigError(f"config.parallel.num_processes: must be 0 (detect) or a positive integer, "
                          f"got {parallel.num_processes!r}")
    if not is_integer(parallel.process_id) or parallel.process_id < -1 or (
            parallel.num_processes and parallel.process_id >= parallel.num_processes):
        raise ConfigError(f"config.parallel.process_id: must be -1 (detect) or in [0, num_processes), "
                          f"got {parallel.process_id!r}")


def agree(value: T) -> T:
    """Process 0's `value` (a bool or an int), on every process. Decisions taken from local clocks (a time
    budget, how many steps the next call runs) must be the same everywhere, or the processes would run
    different numbers of collective steps and hang."""
    if jax.process_count() == 1:
        return value
    return type(value)(multihost_utils.broadcast_one_to_all(np.asarray(value)).item())


# -- the mesh --------------------------------------------------------------------------------------
def mesh_shape(parallel: ml_collections.ConfigDict, num_devices: int, num_processes: int = 1) -> tuple[int, int]:
    """(data, fsdp) sizes of the mesh for `num_devices` devices; data = -1 takes all the devices fsdp leaves."""
    data, fsdp = parallel.data, parallel.fsdp
    if not is_integer(fsdp) or fsdp < 1:
        raise ConfigError(f"config.parallel.fsdp: must be a positive integer, got {fsdp!r}")
    if not is_integer(data) or (data < 1 and data != -1):
        raise ConfigError(f"config.parallel.data: must be -1 (all devices) or a positive integer, got {data!r}")
    if num_devices % fsdp:
        raise ConfigError(f"config.parallel.fsdp: {fsdp} does not divide the {num_devices} available devices")
    data = num_devices // fsdp if data == -1 else data
    if data * fsdp > num_devices:
        raise ConfigError(f"config.parallel.data: a mesh of data={data} x fsdp={fsdp} = {data * fsdp} devices "
                          f"is larger than the {num_devices} available")
    if num_processes > 1 and data * fsdp != num_devices:
        raise ConfigError(f"config.parallel.data: with {num_processes} processes the mesh must use all "
                          f"{num_devices} devices, got data={data} x fsdp={fsdp}")
    return data, fsdp


def check_batch_size(batch_size: int, data: int, fsdp: int) -> None:
    """Every device takes an equal share of every batch (training and evaluation alike)."""
    if batch_size % (data * fsdp):
        raise ConfigError(f"config.train.batch_size: {batch_size} is not divisible by the {data * fsdp} devices "
                          f"of the mesh (config.parallel.data={data} x config.parallel.fsdp={fsdp})")


def make_mesh(parallel: ml_collections.ConfigDict) -> Mesh:
    """The ("data", "fsdp") mesh over the first data x fsdp devices (all of them with several processes).

    Auto axes: XLA's partitioner propagates the steps' in/out shardings through the unannotated model
    code. (jax 0.10's make_mesh defaults to Explicit axes, the sharding-in-types mode; nothing here needs it.)
    """
    data, fsdp = mesh_shape(parallel, jax.device_count(), jax.process_count())
    return jax.make_mesh((data, fsdp), (DATA, FSDP), axis_types=(AxisType.Auto, AxisType.Auto),
                         devices=jax.devices()[:data * fsdp])


# -- shardings -------------------------------------------------------------------------------------
def partition_spec(shape: tuple[int, ...], fsdp: int) -> P:
    """The FSDP rule for one array: its largest axis divisible by fsdp, if the array is big enough."""
    if fsdp == 1 or int(np.prod(shape, dtype=np.int64)) < FSDP_MIN_SIZE:
        return P()
    candidates = [i for i, n in enumerate(shape) if n % fsdp == 0]
    if not candidates:
        return P()
    axis = max(candidates, key=lambda i: (shape[i], -i))
    return P(*(FSDP if i == axis else None for i in range(len(shape))))


def tree_shardings(mesh: Mesh, tree: Any) -> Any:
    """A NamedSharding for every array of `tree` (concrete, abstract or Orbax metadata), by `partition_spec`."""
    fsdp = mesh.shape[FSDP]
    return jax.tree.map(lambda leaf: NamedSharding(mesh, partition_spec(tuple(leaf.shape), fsdp)), tree)


def abstract_on(mesh: Mesh, tree: Any) -> Any:
    """ShapeDtypeStructs of `tree` carrying their shardings on `mesh`: a restore target for Orbax."""
    return jax.tree.map(lambda leaf, sharding: jax.ShapeDtypeStruct(leaf.shape, leaf.dtype, sharding=sharding),
                        tree, tree_shardings(mesh, tree))


@dataclasses.dataclass(frozen=True)
class StepShardings:
    """in/out shardings of one level's train and eval steps."""

    state: Any                 # a TrainState of NamedShardings
    teacher: Any               # the teacher variables' NamedShardings (a single one when there is no teacher)
    batch: NamedSharding       # rows over all devices
    replicated: NamedSharding  # metrics


def step_shardings(mesh: Mesh, state: Any, teacher_variables: Any = None) -> StepShardings:
    replicated = NamedSharding(mesh, P())
    teacher = replicated if teacher_variables is None else tree_shardings(mesh, teacher_variables)
    return StepShardings(tree_shardings(mesh, state), teacher, NamedSharding(mesh, P(BATCH_AXES)), replicated)


# -- global batches --------------------------------------------------------------------------------
def process_rows(sharding: NamedSharding, batch_size: int) -> np.ndarray:
    """The rows of a global batch that live on this process's devices, ascending."""
    spans = sharding.addressable_devices_indices_map((batch_size,)).values()
    return np.unique(np.concatenate([np.arange(batch_size)[span[0]] for span in spans]))


HOST_CHUNK_MB = 64.0  # batches gathered on the host: at most this much of them crosses in one call


class SplitBatches:
    """One split's fixed-size batches, laid out for the chunked loops of sal_jax.chunks.

    `plan(order, start, n)` -> (plan, offset): batches start..start+n of `order` (default: stored order;
    the last batch of a split padded, weight 0) as device arrays whose leading axis, of fixed size
    `capacity`, holds one row per batch: rows offset..offset+n are those batches. `gather(source, row)`,
    traced inside the loop, turns one row into the batch. Two layouts, the same batch values:

    * on device (one process, and the split's arrays -- inputs, labels, cached teacher outputs -- of at
      most `on_device_mb` MB): `source` is the split copied once onto every device; a row is the batch's
      indices and weights, so only they cross from the host, once per pass (the plan of a whole pass is
      kept while `order` is the same object). On this project's CPU the host gather and copy took ~0.3 ms
      of a 2.5 ms MLP step (BENCHMARKS.md); on a GPU or TPU each copy also crosses the bus.
    * on host (larger splits, or several processes, each of which builds only its rows of every global
      batch): `source` is empty; a row is the batch itself, and a plan holds at most HOST_CHUNK_MB of them.

    The capacity depends on the split and the layout only, never on how many steps a call runs, so every
    call of a level runs one compiled program.
    """

    def __init__(self, arrays: dict[str, np.ndarray], batch_size: int, sharding: NamedSharding,
                 on_device_mb: float, num_batches: int | None = None):
        self.arrays = {**arrays, "y": arrays["y"].astype(np.int32)}
        self.batch_size, self.sharding = batch_size, sharding
        self.num_batches = num_batches or -(-len(arrays["x"]) // batch_size)  # a training pass drops the remainder
        self.plan_sharding = NamedSharding(sharding.mesh, P(None, *sharding.spec))  # rows x batch
        size_mb = sum(a.nbytes for a in self.arrays.values()) / 2**20
        self.on_device = sharding.is_fully_addressable and size_mb <= on_device_mb
        self._kept: tuple[Any, Any] = (False, None)  # (order, plan) of the current pass, on device
        if self.on_device:
            self.source = jax.device_put(self.arrays, NamedSharding(sharding.mesh, P()))
            self.capacity = self.num_batches
            self.gather = self._gather_on_device
        else:
            self.source = {}
            batch_mb = size_mb / len(arrays["x"]) * batch_size
            self.capacity = max(1, min(self.num_batches, int(HOST_CHUNK_MB / batch_mb)))
            self.gather = self._row_is_the_batch
            # this process's rows of every global batch (None: all of them)
            self._rows = None if sharding.is_fully_addressable else process_rows(sharding, batch_size)

    @staticmethod
    def _gather_on_device(source: dict[str, jax.Array], row: dict[str, jax.Array]) -> dict[str, jax.Array]:
        return {**{key: array[row["idx"]] for key, array in source.items()}, "weight": row["weight"]}

    @staticmethod
    def _row_is_the_batch(source: dict[str, jax.Array], row: dict[str, jax.Array]) -> dict[str, jax.Array]:
        return row

    def row_shape(self) -> dict[str, jax.ShapeDtypeStruct]:
        """The shapes of one plan row (what `gather` takes), for abstract evaluation."""
        b = self.batch_size
        if self.on_device:
            return {"idx": jax.ShapeDtypeStruct((b,), np.int32), "weight": jax.ShapeDtypeStruct((b,), np.float32)}
        return {**{k: jax.ShapeDtypeStruct((b, *a.shape[1:]), a.dtype) for k, a in self.arrays.items()},
                "weight": jax.ShapeDtypeStruct((b,), np.float32)}

    def plan(self, order: np.ndarray | None, start: int, n: int) -> tuple[dict[str, jax.Array], int]:
        if n > self.capacity or start + n > self.num_batches:
            raise ValueError(f"batches {start}..{start + n} do not fit a plan of {self.capacity} of {self.num_batches}")
        if self.on_device:
            if self._kept[0] is not order:
                pairs = list(itertools.islice(batch_indices(len(self.arrays["x"]), self.batch_size, order),
                                              self.num_batches))
                plan = {"idx": np.stack([p[0] for p in pairs]).astype(np.int32),
                        "weight": np.stack([p[1] for p in pairs])}
                self._kept = (order, jax.device_put(plan, self.plan_sharding))
            return self._kept[1], start
        extras = {k: a for k, a in self.arrays.items() if k not in ("x", "y")}
        local = list(batches(self.arrays["x"], self.arrays["y"], self.batch_size, order, rows=self._rows,
                             extras=extras, start=start, stop=start + n))
        # rows past n are never run: zeros keep the plan's one shape
        plan = {key: np.concatenate([np.stack([b[key] for b in local]),
                                     np.zeros((self.capacity - n, *local[0][key].shape), local[0][key].dtype)])
                for key in local[0]}
        if self._rows is None:
            return jax.device_put(plan, self.plan_sharding), 0
        shapes = {key: (self.capacity, self.batch_size, *a.shape[2:]) for key, a in plan.items()}
        return jax.make_array_from_process_local_data(self.plan_sharding, plan, shapes), 0
