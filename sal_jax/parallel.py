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
One process with a small training set keeps it on the devices and gathers batches there (`TrainingBatches`).
"""
from __future__ import annotations

import dataclasses
import itertools
import os
from typing import Any, Iterator

import jax
import ml_collections
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec as P

from sal_jax.data.arrays import batch_indices, batches
from sal_jax.errors import ConfigError, first_line, is_integer

DATA, FSDP = "data", "fsdp"
BATCH_AXES = (DATA, FSDP)  # the batch dimension is split over every device of the mesh
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


def agree(flag: bool) -> bool:
    """Process 0's `flag`, on every process. Decisions taken from local clocks (a time budget) must be
    the same everywhere, or the processes would run different numbers of collective steps and hang."""
    if jax.process_count() == 1:
        return flag
    return bool(multihost_utils.broadcast_one_to_all(np.bool_(flag)))


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


def global_batches(x: np.ndarray, y: np.ndarray, batch_size: int, sharding: NamedSharding | None,
                   order: np.ndarray | None = None, start: int = 0, stop: int | None = None,
                   extras: dict[str, np.ndarray] | None = None) -> Iterator[dict[str, Any]]:
    """Batches start..stop of `batches(x, y, batch_size, order)` as global arrays split by `sharding`:
    each process gathers only its own rows of each batch.

    With one process (or sharding=None) they stay NumPy: a step jitted with in_shardings splits them
    itself, ~10% faster per step for a small MLP than building the global arrays here.
    """
    if sharding is None or sharding.is_fully_addressable:
        yield from itertools.islice(batches(x, y, batch_size, order, extras=extras), start, stop)
        return
    rows = process_rows(sharding, batch_size)
    shapes = {"x": (batch_size, *x.shape[1:]), "y": (batch_size,), "weight": (batch_size,),
              **{key: (batch_size, *a.shape[1:]) for key, a in (extras or {}).items()}}
    for local in itertools.islice(batches(x, y, batch_size, order, rows=rows, extras=extras), start, stop):
        yield jax.make_array_from_process_local_data(sharding, local, shapes)


class TrainingBatches:
    """One level's training batches, epoch by epoch: `self(order, start, stop)` yields batches start..stop
    of the epoch in `order`, the same values whichever way they are made.

    With one process and a training set (inputs, labels and cached teacher outputs) of at most
    `on_device_mb` MB, the set is copied once onto every device and each step's batch is gathered there:
    only the batch's indices and weights cross from the host. On this project's CPU the host gather and
    copy took ~0.3 ms of a 2.5 ms MLP step (BENCHMARKS.md); on a GPU or TPU each copy also crosses the
    bus. Larger sets, and several processes, gather on the host (`global_batches`).
    """

    def __init__(self, arrays: dict[str, np.ndarray], batch_size: int, sharding: NamedSharding,
                 on_device_mb: float):
        self.arrays, self.batch_size, self.sharding = arrays, batch_size, sharding
        self.extras = {k: a for k, a in arrays.items() if k not in ("x", "y")}  # for `global_batches`
        size_mb = sum(a.nbytes for a in arrays.values()) / 2**20
        self.on_device = sharding.is_fully_addressable and size_mb <= on_device_mb
        if self.on_device:
            replicated = NamedSharding(sharding.mesh, P())
            self.device_arrays = jax.device_put({**arrays, "y": arrays["y"].astype(np.int32)}, replicated)
            self.gather = jax.jit(lambda data, idx, weight: {**{k: a[idx] for k, a in data.items()},
                                                            "weight": weight}, out_shardings=sharding)

    def __call__(self, order: np.ndarray, start: int, stop: int) -> Iterator[dict[str, Any]]:
        if not self.on_device:
            yield from global_batches(self.arrays["x"], self.arrays["y"], self.batch_size, self.sharding,
                                      order, start, stop, extras=self.extras)
            return
        for idx, weight in itertools.islice(batch_indices(len(self.arrays["x"]), self.batch_size, order),
                                           start, stop):
            yield self.gather(self.device_arrays, idx, weight)
