"""Ladder runs on simulated CPU devices for tests/test_parallel.py, one process (or one of several) each.

    python tests/parallel_child.py '{"runs": [{"data": 4, "fsdp": 2}, ...], "out": "x.npz", ...}'

The parent sets XLA_FLAGS=--xla_force_host_platform_device_count=N. Spec keys:
  runs: the meshes to train on, in turn: {"data": -1 | n, "fsdp": n[, "rounds": r, "family": f]}; results go to out
    as "<i>/<key>"
  out: .npz path (several processes: each writes out with ".p<process id>" inserted)
  num_processes, process_id, port: join a multi-process run on 127.0.0.1:port (gloo CPU collectives)
  checkpoint_dir: train with checkpoints there (resuming from them if any); term_at: SIGTERM to this
    process after that training step (the run saves at the next step and exits 143)
  log_dir: TensorBoard events there (process 0 writes them)
"""
import json
import os
import signal
import sys
from pathlib import Path

# tests/ (conftest) and the repo root (sal_jax), so the child runs whether or not sal_jax is installed
sys.path[:0] = [str(Path(__file__).resolve().parent), str(Path(__file__).resolve().parents[1])]
import jax  # noqa: E402
import numpy as np  # noqa: E402
from jax.experimental import multihost_utils  # noqa: E402

from conftest import blobs  # noqa: E402
from sal_jax import checkpoint, parallel  # noqa: E402
from sal_jax.config import default_config  # noqa: E402
from sal_jax.ladder import train_ladder  # noqa: E402
from sal_jax.models import make_ladder  # noqa: E402
from nnx_models import resnet_ladder  # noqa: E402


def child_config(data: int = -1, fsdp: int = 1):
    """Levels of 2 and 3 hidden layers of width 64 (so FSDP has 64x64 kernels to split, the teacher's
    too), and one step per epoch (150 examples, batch 128), so each history row is one step's loss."""
    c = default_config()
    c.model.levels, c.model.width = (2, 3), 64
    c.train.epochs, c.train.batch_size, c.train.learning_rate = 4, 128, 1e-2
    c.baselines.compute_matched = False  # the phases these tests count are SAL's and the epoch-matched one
    c.baselines.time_matched = False  # its length depends on the clock
    c.checkpoint.every_steps = 100
    c.parallel.data, c.parallel.fsdp = data, fsdp
    return c


def record(result) -> dict[str, np.ndarray]:
    """Final variables (gathered from every process) and which run each belongs to, per-step train and
    test losses (one row per epoch of every run, and which run each row belongs to), and what the run ran on: compilations per level, devices, leaves split over "fsdp"."""
    runs = result.sal + [result.plain_epoch_matched]
    variables = [run.variables for run in runs]
    leaves = jax.tree.leaves(variables)
    out = {f"leaf_{i}": leaf for i, leaf in enumerate(multihost_utils.process_allgather(leaves, tiled=True))}
    for key in ("train_loss", "test_loss"):  # runs differ in length (the baseline: epochs x rounds)
        out[key] = np.array([row[key] for run in runs for row in run.history])
    out["row_run"] = np.array([i for i, run in enumerate(runs) for _ in run.history])
    out["structure_flips"] = np.array([row.get("structure_flips", -1.0) for run in runs for row in run.history])
    out["connections"] = np.array([row.get("connections", -1.0) for run in runs for row in run.history])
    out["compiles"] = np.array([[run.compiles["train"], run.compiles["eval"]] for run in runs])
    out["mesh_devices"] = np.array([leaf.sharding.num_devices for leaf in leaves])
    out["fsdp_split"] = np.array(sum(parallel.FSDP in str(leaf.sharding.spec) for leaf in leaves))
    out["leaf_run"] = np.concatenate([np.full(len(jax.tree.leaves(v)), i) for i, v in enumerate(variables)])
    return out


def stop_after(step: int) -> None:
    """SIGTERM to process 0 right after training step `step` of the whole run (the others hear of it
    from JAX's preemption service)."""
    original = checkpoint.PhaseHook.after_call

    def after_call(self, loop, call):
        original(self, loop, call)
        if self.store.run_step == step and jax.process_index() == 0:
            os.kill(os.getpid(), signal.SIGTERM)

    checkpoint.PhaseHook.after_call = after_call


def main(spec: dict) -> None:
    config = child_config()
    if spec.get("num_processes", 0) > 1:
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
        config.parallel.coordinator_address = f"127.0.0.1:{spec['port']}"
        config.parallel.num_processes, config.parallel.process_id = spec["num_processes"], spec["process_id"]
    assert parallel.initialize_distributed(config.parallel) == (spec.get("num_processes", 0) > 1)
    if spec.get("term_at"):
        stop_after(spec["term_at"])
    data, out = blobs(), {}
    for i, mesh in enumerate(spec["runs"]):
        config.parallel.data, config.parallel.fsdp = mesh["data"], mesh["fsdp"]
        config.train.rounds = mesh.get("rounds", 1)
        config.train.batch_size = mesh.get("batch_size", 128)
        config.train.steps_per_call = mesh.get("steps_per_call", 0)
        # "glai": each level frozen after its 2nd epoch at the latest; "nnx": tests/nnx_models.py's NnxResNet
        family = mesh.get("family", "mlp")
        config.model.family = "mlp" if family == "nnx" else family  # "nnx": the user's own levels
        config.sparse.prune_fraction = 0.5  # "set_mlp": 64 x 64 layers at density 0.625, half the units pruned
        try:
            levels = (resnet_ladder(config.model.levels, 8, config.model.width, data.num_classes)
                      if family == "nnx" else make_ladder(config.model, data.num_classes))
            result = train_ladder(levels, data, config,
                                  checkpoint_dir=spec.get("checkpoint_dir"), log_dir=spec.get("log_dir"))
        except checkpoint.Preempted as stop:
            print(stop, file=sys.stderr)
            sys.exit(stop.exit_code)
        out.update({f"{i}/{k}": v for k, v in record(result).items()})
    path = spec["out"] if jax.process_count() == 1 else spec["out"].replace(".npz", f".p{jax.process_index()}.npz")
    np.savez(path, **out)


if __name__ == "__main__":
    main(json.loads(sys.argv[1]))
