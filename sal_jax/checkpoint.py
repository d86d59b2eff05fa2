"""Orbax checkpoints of a ladder run: exact resume anywhere, preemption, corrupt-checkpoint fallback.

A ladder run is a fixed sequence of phases (SAL's levels round by round, then the plain baselines).
A checkpoint holds the finished phases (records + variables), and for the phase in progress its train
state, the position in its epoch and the epoch's metric sums so far. Data order and augmentation are
pure functions of (seed, level, round, epoch, step), so nothing else is needed to continue exactly.
This module stores and restores; the ladder loop that uses it is sal_jax.ladder.run_phases.

Arrays are restored onto the current run's mesh (sal_jax.parallel), whatever the topology that wrote
them: a checkpoint saved on 8 devices resumes on 1 device or on several processes.

Every saved array is verified when restored: its crc32c, taken at save time, is in the checkpoint's
JSON item "meta". Orbax detects damaged metadata and tree nodes, but not damaged array data (zstd
frames without their own checksum): a few flipped bits there were restored as different weights.
"""
from __future__ import annotations

import dataclasses
import os
import signal
import sys
from typing import TYPE_CHECKING, Any, Callable, Sequence

import crc32c
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import orbax.checkpoint as ocp
from jax.experimental import multihost_utils

from sal_jax import families, parallel
from sal_jax.config import default_config, flat_config
from sal_jax.errors import ConfigError, first_line
from sal_jax.hooks import Call, Hook
from sal_jax.records import LevelRun, Progress
from sal_jax.step import TrainState

if TYPE_CHECKING:
    from sal_jax.level_loop import LevelLoop

# Config keys that do not change a ladder run's results: they may differ between a run and its
# resumption. (A sweep cell's own size and epochs are copied into data.per_class / train.epochs.)
# parallel.*: the mesh changes results only by float rounding, and resuming on another topology is the point.
RESULT_NEUTRAL = ("checkpoint.", "num_seeds", "quick", "sweep.", "ablations", "parallel.", "train.steps_per_call",
                  "tensorboard", "guidance.gradient_diagnostics")
ARRAY_ITEMS = ("finished", "state", "sums")
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)  # a scheduler's preemption, and Ctrl-C


def _item_handlers() -> dict[str, ocp.CheckpointHandler]:
    """Named handlers (rather than item names): the manager can then read each item's array metadata."""
    return {"meta": ocp.JsonCheckpointHandler(), **{name: ocp.StandardCheckpointHandler() for name in ARRAY_ITEMS}}


class _CheckpointManager(ocp.CheckpointManager):
    """Orbax's manager without its own preemption checks.

    JAX's preemption service treats every `reached_preemption_sync_point(step)` call as this process's
    current step and picks the sync step from them. RunCheckpointer asks once per training step, by
    training step; the manager would also ask on every save, by save number, and the service could
    then pick a step only the save numbers reach: a multi-process run then ran on after SIGTERM (seen
    once in CI). RunCheckpointer saves on preemption itself, so nothing is lost.
    """

    def reached_preemption(self, step: int) -> bool:
        return False


class DamagedCheckpoint(Exception):
    """A restored array differs from the one saved (its checksum does not match)."""


class Preempted(Exception):
    """Raised after SIGTERM or SIGINT once the current step is finished and saved (or at once while a
    phase is still setting up: then nothing has trained since the last checkpoint)."""

    def __init__(self, message: str, signum: int = signal.SIGTERM):
        super().__init__(message)
        self.exit_code = 128 + signum  # what schedulers and shells expect: 143 for SIGTERM, 130 for SIGINT


@dataclasses.dataclass
class Snapshot:
    """What a checkpoint holds: the finished phases, and the phase in progress if any."""

    done: list[LevelRun]                # the finished phases, in order (records and variables)
    state: TrainState | None = None     # the train state of the phase in progress
    progress: Progress | None = None    # where it stands (its metric sums included)


def config_differences(saved: dict[str, Any], current: ml_collections.ConfigDict) -> list[str]:
    """Keys whose values differ between a checkpoint's config and the current one, result-neutral keys
    aside. A key the checkpoint lacks (added to the library after it was written) counts only when the
    current value is not the library default: a new key's default keeps the old behaviour."""
    old, new = flat_config(saved), flat_config(current)
    defaults = flat_config(default_config())
    return sorted(k for k in old.keys() | new.keys()
                  if old.get(k) != new.get(k) and not k.startswith(RESULT_NEUTRAL)
                  and not (k not in old and k in defaults and new[k] == defaults[k]))


class RunCheckpointer:
    """One Orbax CheckpointManager for one ladder run directory.

    Saves every `config.checkpoint.every_steps` training steps and at the end of every phase; keeps the
    last `config.checkpoint.keep`. While open, SIGTERM or SIGINT (Ctrl-C) makes the next step save and
    raise `Preempted`; one that comes while a phase sets up (its teacher cache, the data's copy to the
    devices; not inside XLA's compilation, which Python cannot interrupt) raises it at once, since
    nothing has trained since the last checkpoint. With several processes, JAX's preemption service
    owns SIGTERM and picks the step, the same on every process; SIGINT is then Python's
    KeyboardInterrupt (the run continues from the last checkpoint).
    """

    def __init__(self, directory: str, config: ml_collections.ConfigDict, metadata: dict[str, Any]):
        self.directory = os.path.abspath(directory)
        self.config = config
        self.metadata = metadata  # e.g. the dataset's class count, so levels can be rebuilt from disk
        self.every_steps = config.checkpoint.every_steps
        self.mesh = parallel.make_mesh(config.parallel)  # where restored arrays go
        # Step directories are created before save() returns: with Orbax's default (created in the
        # background), a save that fails part-way left its writer threads waiting 300 s for a directory
        # that never came, and the process hung on exit instead of reporting the error.
        # cleanup_tmp_directories: a save that a kill interrupted leaves a <n>.orbax-checkpoint-tmp folder;
        # removed here (by process 0), as expected after a kill, rather than by the next save numbered n,
        # which logged a warning about it on every rerun.
        options = ocp.CheckpointManagerOptions(
            max_to_keep=config.checkpoint.keep, create=True, cleanup_tmp_directories=True,
            async_options=ocp.AsyncOptions(create_directories_asynchronously=False))
        self.manager = _CheckpointManager(self.directory, options=options, item_handlers=_item_handlers())
        self.save_number = max(self.manager.all_steps(), default=0)
        self.run_step = 0  # training steps over all phases so far
        self.stop_signal: int | None = None  # SIGTERM or SIGINT, once received
        self.phase_name = ""
        self.in_setup = False  # a phase has started and has not finished its first step
        self._previous_handlers: dict[int, Any] = {}

    # -- signals ---------------------------------------------------------------------------------
    def __enter__(self) -> "RunCheckpointer":
        if jax.process_count() > 1:  # JAX's preemption service owns SIGTERM; a handler here would replace it
            return self
        try:
            for signum in STOP_SIGNALS:
                self._previous_handlers[signum] = signal.signal(signum, self._on_signal)
        except ValueError:  # not the main thread: preemption handling is the caller's business
            pass
        return self

    def __exit__(self, *exc) -> None:
        self.in_setup = False
        self.manager.wait_until_finished()
        for signum, handler in self._previous_handlers.items():
            signal.signal(signum, handler)
        self.manager.close()

    def _on_signal(self, signum, frame) -> None:
        self.stop_signal = signum
        if self.in_setup:  # nothing to save: stop now rather than after the phase's first step
            self.in_setup = False
            raise Preempted(self._stopped(f"nothing trained since training step {self.run_step} (saved), "
                                          f"while '{self.phase_name}' was setting up"), signum)

    def _stopped(self, where: str) -> str:
        name = signal.Signals(self.stop_signal or signal.SIGTERM).name
        return f"preempted ({name}): {where}; checkpoints in {self.directory}; rerun the same command to resume"

    def start_phase(self, name: str) -> None:
        """Marks the start of phase `name`'s setup; stops here if a signal came since the last step."""
        if self.stop_signal is not None:
            raise Preempted(self._stopped(f"saved after training step {self.run_step}, before '{name}'"),
                            self.stop_signal)
        self.phase_name, self.in_setup = name, True

    def _preempted(self) -> bool:
        if jax.process_count() > 1:  # true on every process at the same step, after any one got SIGTERM
            if multihost_utils.reached_preemption_sync_point(self.run_step):
                self.stop_signal = signal.SIGTERM
                return True
            return False
        return self.stop_signal is not None

    # -- saving ----------------------------------------------------------------------------------
    def save(self, snapshot: Snapshot) -> None:
        _check_alive(snapshot)
        self.save_number += 1
        progress = snapshot.progress
        arrays = {}
        if snapshot.done:
            arrays["finished"] = {str(i): run.variables for i, run in enumerate(snapshot.done)}
        if snapshot.state is not None:
            arrays["state"] = snapshot.state
        if progress is not None and progress.sums:
            arrays["sums"] = progress.sums
        meta = {"config": self.config.to_dict(), "metadata": self.metadata,
                "completed": [run.record() for run in snapshot.done],
                "progress": None if progress is None else progress.record(), "run_step": self.run_step,
                "checksums": {item: checksums(item, tree) for item, tree in arrays.items()}}
        items = {item: ocp.args.StandardSave(tree) for item, tree in arrays.items()}
        self.manager.save(self.save_number, args=ocp.args.Composite(meta=ocp.args.JsonSave(meta), **items),
                          force=True)

    def save_finished(self, done: Sequence[LevelRun]) -> None:
        """Saves the finished phases `done` and nothing in progress."""
        self.save(Snapshot(list(done)))

    def phase_hook(self, done: Sequence[LevelRun]) -> "PhaseHook":
        """The checkpointing hook (sal_jax.hooks) of the phase after the finished phases `done`."""
        return PhaseHook(self, done)

    # -- restoring -------------------------------------------------------------------------------
    def restore(self, state_template: Callable[[list[LevelRun]], Any]) -> Snapshot | None:
        """The newest readable checkpoint, or None. Unreadable or damaged ones are reported, deleted, and
        skipped.

        state_template(done) gives the abstract train state of the phase that follows the finished `done`.
        """
        snapshot = newest_readable(self.manager, self.directory, lambda n: self._restore(n, state_template),
                                   resuming=True)
        self.save_number = max(self.manager.all_steps(), default=0)
        return snapshot

    def _restore(self, number: int, state_template) -> Snapshot:
        meta = self.manager.restore(number, args=ocp.args.Composite(meta=ocp.args.JsonRestore())).meta
        differences = config_differences(meta["config"], self.config)
        if differences and not self.config.checkpoint.allow_config_change:
            raise ConfigError(
                f"config differs from the run in {self.directory} in {', '.join(differences)}; use another "
                f"workdir, or set --config.checkpoint.allow_config_change=True to resume anyway")
        saved_members, members = meta["metadata"].get("members"), self.metadata.get("members")
        if saved_members != members:  # the stacked states would belong to other trainings
            raise ConfigError(f"the run in {self.directory} trained other members ({saved_members or 'one training'}) "
                              f"than this one ({members or 'one training'}); use another workdir")
        completed = meta["completed"]
        variables = []
        if completed:
            finished = self.manager.restore(number, args=ocp.args.Composite(
                finished=ocp.args.StandardRestore(self._saved_arrays(number, "finished")))).finished
            verify(meta, "finished", finished)
            variables = [finished[str(i)] for i in range(len(completed))]
        snapshot = Snapshot([LevelRun.from_record(r, v) for r, v in zip(completed, variables)])
        if meta["progress"] is not None:
            template = parallel.abstract_on(self.mesh, state_template(snapshot.done))
            items = {"state": ocp.args.StandardRestore(template)}
            if meta["progress"]["has_sums"]:
                items["sums"] = ocp.args.StandardRestore(self._saved_arrays(number, "sums"))
            restored = self.manager.restore(number, args=ocp.args.Composite(**items))
            for item in items:
                verify(meta, item, restored[item])
            snapshot.state = restored.state
            sums = jax.tree.map(jnp.asarray, restored.sums) if meta["progress"]["has_sums"] else None
            snapshot.progress = Progress.from_record(meta["progress"], sums)
        self.run_step = meta["run_step"]
        return snapshot

    def _saved_arrays(self, number: int, item: str) -> Any:
        """A restore target for `item`: its arrays' saved shapes and dtypes, laid out on this run's mesh.
        (Without one, Orbax would recreate the saving run's shardings, on devices that may not exist.)"""
        return parallel.abstract_on(self.mesh, self.manager.item_metadata(number)[item].tree)


@dataclasses.dataclass
class PhaseHook(Hook):
    """Between the training calls of one phase (sal_jax.hooks): saves every `every_steps` training steps
    of the run (calls end there), and after a signal saves and stops (raising Preempted)."""

    store: RunCheckpointer
    done: Sequence[LevelRun]  # the finished phases

    def steps_until(self, loop: LevelLoop) -> int:
        return self.store.every_steps - self.store.run_step % self.store.every_steps

    def after_call(self, loop: LevelLoop, call: Call) -> None:
        store = self.store
        store.in_setup = False
        store.run_step += call.steps
        snapshot = lambda: Snapshot(list(self.done), loop.state, loop.progress)
        if store._preempted():
            store.save(snapshot())
            store.manager.wait_until_finished()
            raise Preempted(store._stopped(f"saved after training step {store.run_step}, in '{store.phase_name}'"),
                            store.stop_signal)
        if store.run_step % store.every_steps == 0:
            store.save(snapshot())


def _check_alive(snapshot: Snapshot) -> None:
    """Every array of a snapshot must still exist: one that a donating step deleted cannot be saved, and
    Orbax would fail on it part-way through a save. Named here, before anything is written."""
    parts = {**{f"finished phase {i + 1}": run.variables for i, run in enumerate(snapshot.done)},
             "the train state": snapshot.state,
             "the epoch's metric sums": None if snapshot.progress is None else snapshot.progress.sums}
    for part, tree in parts.items():
        for path, leaf in jax.tree_util.tree_leaves_with_path(tree):
            if isinstance(leaf, jax.Array) and leaf.is_deleted():
                raise RuntimeError(f"checkpoint: cannot save {part}: its array {jax.tree_util.keystr(path)} "
                                   f"has been deleted (donated to a train step?)")


def checksums(item: str, tree: Any) -> dict[str, int]:
    """crc32c of each array of `tree` by name (`item`/its tree path): of the logical array, gathered to
    the host, so it does not depend on the mesh that saved or restores it. (With several processes, an
    array sharded over them is gathered from all: every process must call this with the same tree.)"""
    def host_copy(leaf: Any) -> np.ndarray:
        if isinstance(leaf, jax.Array) and not leaf.is_fully_addressable:
            return multihost_utils.process_allgather(leaf, tiled=True)
        return np.asarray(leaf)

    return {_array_name(item, path): crc32c.crc32c(np.ascontiguousarray(host_copy(leaf)).tobytes())
            for path, leaf in jax.tree_util.tree_leaves_with_path(tree)}


def _array_name(item: str, path: Sequence[Any]) -> str:
    """e.g. state/params/model/dense_0/kernel: the same whether the tree is the saved TrainState (attribute
    keys) or Orbax's restored dicts (dict keys)."""
    keys = (getattr(k, "key", getattr(k, "name", getattr(k, "idx", k))) for k in path)
    return "/".join([item, *map(str, keys)])


def verify(meta: dict[str, Any], item: str, tree: Any) -> None:
    """Raises DamagedCheckpoint naming the first array of the restored `item` whose checksum differs
    from the one saved in `meta`. Checkpoints written before checksums existed (no "checksums" in their
    meta) restore unverified."""
    if "checksums" not in meta:
        return
    saved = meta["checksums"].get(item, {})
    for name, value in checksums(item, tree).items():
        if saved.get(name) != value:
            raise DamagedCheckpoint(f"array {name} does not match its checksum; saved after training step "
                                    f"{meta['run_step']}")


def newest_readable(manager: ocp.CheckpointManager, directory: str, read: Callable[[int], Any],
                    resuming: bool) -> Any:
    """read(number) of the newest checkpoint it can read, or None; each one it cannot read (corrupt,
    half-written, or an array not matching its checksum) is reported in one line on stderr and skipped.
    A resuming run deletes those (it writes the newer ones again) and starts from scratch if none is
    left; a reader such as load_level leaves the run's directory as it is. A ConfigError (e.g. a
    changed config) is not a broken checkpoint: it stops the search."""
    numbers = sorted(manager.all_steps(), reverse=True)
    for i, number in enumerate(numbers):
        try:
            return read(number)
        except ConfigError:
            raise
        except Exception as error:  # a corrupt or partial checkpoint: any read error
            problem = (f"damaged ({error})" if isinstance(error, DamagedCheckpoint)
                       else f"unreadable ({_reason(error)})")
            then = (f"falling back to checkpoint {numbers[i + 1]}" if i + 1 < len(numbers)
                    else "no readable checkpoint left" + (": starting from scratch" if resuming else ""))
            print(f"warning: checkpoint {number} in {directory} is {problem}; {then}", file=sys.stderr)
            if resuming:
                manager.delete(number)
    return None


def _reason(error: BaseException) -> str:
    """An Orbax read error in a few words: its first line without the TensorStore spec it appends."""
    return first_line(error).split(" See full TensorStore details")[0][:200]


def latest_metadata(directory: str) -> dict[str, Any]:
    """The newest readable checkpoint's meta (config, dataset metadata, completed phases)."""
    directory = os.path.abspath(directory)
    if not os.path.isdir(directory):
        raise ConfigError(f"no checkpoint directory at {directory}")
    device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])  # whatever topology saved them

    def read(number: int) -> dict[str, Any]:
        meta = manager.restore(number, args=ocp.args.Composite(meta=ocp.args.JsonRestore())).meta
        finished = {}
        if meta["completed"]:
            target = jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=device),
                                  manager.item_metadata(number)["finished"].tree)
            finished = manager.restore(number, args=ocp.args.Composite(
                finished=ocp.args.StandardRestore(target))).finished
            verify(meta, "finished", finished)
        return {**meta, "finished": finished}

    with ocp.CheckpointManager(directory, item_handlers=_item_handlers()) as manager:
        found = newest_readable(manager, directory, read, resuming=False)
    if found is None:
        raise ConfigError(f"no readable checkpoint in {directory}")
    return found


def load_level(directory: str, level: int, module: Any = None, kind: str = "sal") -> tuple[Any, Any]:
    """(module, variables) of SAL level `level` (1 = top) from a ladder run's checkpoint directory: the
    newest finished training of that level (a GLAI level's: its value phase, once that has finished).
    `kind` "plain_epoch_matched" or "plain_time_matched": that plain baseline of the level instead.
    Built-in levels are rebuilt from the saved config; pass `module` for a ladder of your own modules."""
    meta = latest_metadata(directory)
    phases, done = meta["metadata"]["phases"], len(meta["completed"])
    matches = [i for i, p in enumerate(phases[:done]) if p["kind"] == kind and p["level"] == level]
    if not matches:
        finished = sorted({p["level"] for p in phases[:done] if p["kind"] == kind})
        what = "level" if kind == "sal" else f"the {kind} baseline of level"
        raise ConfigError(f"{what} {level} has not finished training in {directory} (finished levels: {finished})")
    variables = meta["finished"][str(matches[-1])]
    if module is None:
        from sal_jax.models import make_level
        config = ml_collections.ConfigDict(meta["config"])
        module = make_level(config.model.family, level - 1, config.model, meta["metadata"]["num_classes"],
                            meta["metadata"]["vocab_size"])
        # The config describes the built-in ladder even when the run trained the user's own modules:
        # the saved variables then belong to another module, and flax would fail only when it is applied.
        difference = _built_in_mismatch(module, config.model.family, variables)
        if difference:
            raise ConfigError(
                f"level {level} in {directory} does not match the built-in {config.model.family!r} level its "
                f"config describes ({difference}): the run trained modules of your own; pass one as "
                f"load_level(directory, level, module=...)")
    return module, variables


def _built_in_mismatch(module: Any, family: str, variables: Any) -> str | None:
    """The first difference between saved `variables` and those of the built-in `module` (paths and
    shapes, from an abstract init on the family's probe input: free), or None when they match."""
    from sal_jax.levels import abstract_level

    params = variables.get("params", {}) if isinstance(variables, dict) else {}
    sample = families.get(family).probe(module, params)
    if isinstance(sample, str):  # the saved params lack what the probe reads
        return sample
    shapes = lambda tree: {jax.tree_util.keystr(path): tuple(leaf.shape)
                           for path, leaf in jax.tree_util.tree_leaves_with_path(tree)}
    # compared: the trained collections (a frozen GLAI level's structure is added by training, a sparse
    # level's masks change in it)
    trained = lambda tree: {k: v for k, v in tree.items() if k in ("params", "batch_stats")}
    saved, built = shapes(trained(variables)), shapes(trained(abstract_level(module, sample)[1]))
    for path in sorted(saved.keys() | built.keys()):
        if path not in built:
            return f"it has {path}, which the built-in level lacks"
        if path not in saved:
            return f"it lacks {path}"
        if saved[path] != built[path]:
            return f"{path} has shape {saved[path]}, the built-in level's {built[path]}"
    return None
