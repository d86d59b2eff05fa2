"""One train step from one device to many processes: the same SAL results on every mesh, several
processes on one machine, checkpoints across topologies, preemption, and the config errors.

This process has one CPU device, so runs on 8 devices happen in subprocesses (tests/parallel_child.py)
with XLA_FLAGS=--xla_force_host_platform_device_count=8 and JAX_PLATFORMS=cpu (also on a GPU machine: the
bitwise comparisons between children are CPU promises); two processes with 4 devices each stand in for
two hosts (gloo collectives over 127.0.0.1). The task is a 2-level ladder guided top-down plus the plain
baseline, one step per epoch, so each history row is one step's loss.
"""
import json
import os
import re
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest
from jax.sharding import PartitionSpec as P

from conftest import blobs
from promises import assert_reproduced
from parallel_child import child_config
from sal_jax import parallel
from sal_jax.data.arrays import batches
from sal_jax.errors import ConfigError
from sal_jax.ladder import train_ladder
from sal_jax.models import make_ladder

ROOT = Path(__file__).resolve().parents[1]
CHILD = ROOT / "tests" / "parallel_child.py"
MESHES = [{"data": 1, "fsdp": 1}, {"data": 2, "fsdp": 1}, {"data": 4, "fsdp": 1}, {"data": -1, "fsdp": 1},
          {"data": 4, "fsdp": 2}]
ONE, EIGHT, FSDP = 0, 3, 4  # indices into MESHES: 1 device, 8 devices data-parallel, 8 devices 4 x 2 FSDP
# Two rounds (round 2 continues each level from round 1's variables: steps 9-16, the baseline 17-24) on
# 1 device and on 4 x 2 FSDP, run after MESHES in the same child: indices ONE_R2 and FSDP_R2.
ROUND_2 = [{"data": 1, "fsdp": 1, "rounds": 2}, {"data": 4, "fsdp": 2, "rounds": 2}]
ONE_R2, FSDP_R2 = len(MESHES), len(MESHES) + 1
# Several steps per call across processes: batch 32 (4 steps an epoch), calls of 3 and a ragged 1, each
# process sending its rows of 3 batches at a time (the host layout); index CHUNKED, after ROUND_2.
CHUNKED_RUN = {"data": 4, "fsdp": 2, "batch_size": 32, "steps_per_call": 3}
CHUNKED = ONE_R2 + 2
# GLAI levels (structure frozen within 2 of the 4 epochs; the structure split over "fsdp" like the params, each
# example's gates cached and split with its batch) on 1 device and on 4 x 2 FSDP: GLAI_ONE, GLAI_FSDP.
GLAI_RUNS = [{"data": 1, "fsdp": 1, "family": "glai"}, {"data": 4, "fsdp": 2, "family": "glai"}]
GLAI_ONE, GLAI_FSDP = CHUNKED + 1, CHUNKED + 2
# Sparse levels (masks split like their params, evolved and pruned between epochs) the same way.
SPARSE_RUNS = [{"data": 1, "fsdp": 1, "family": "set_mlp"}, {"data": 4, "fsdp": 2, "family": "set_mlp"}]
SPARSE_ONE, SPARSE_FSDP = GLAI_FSDP + 1, GLAI_FSDP + 2
# NNX levels (tests/nnx_models.py: BatchNorm over the whole global batch, a Dropout RNG stream in the state,
# features named) the same way.
NNX_RUNS = [{"data": 1, "fsdp": 1, "family": "nnx"}, {"data": 4, "fsdp": 2, "family": "nnx"}]
NNX_ONE, NNX_FSDP = SPARSE_FSDP + 1, SPARSE_FSDP + 2
TOLERANCE = 1e-5            # float32: summation order differs between meshes, nothing else does
TERM_AT = 5                 # SIGTERM after step 5: level 1 is done (4 steps), level 2 is mid-way


def child_env(devices: int) -> dict[str, str]:
    return dict(os.environ, XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}", JAX_PLATFORMS="cpu")


def run_processes(spec: dict, processes: int, devices: int, expect: int = 0) -> list[dict[str, np.ndarray]]:
    """Runs the child as `processes` processes of `devices` devices each; returns each one's results."""
    out = spec["out"]
    if processes > 1:
        with socket.socket() as s:  # a free port for the coordinator
            s.bind(("127.0.0.1", 0))
            spec = {**spec, "num_processes": processes, "port": s.getsockname()[1]}
    procs = [subprocess.Popen([sys.executable, str(CHILD), json.dumps({**spec, "process_id": i})], env=child_env(devices),
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True) for i in range(processes)]
    try:
        errors = [proc.communicate(timeout=300)[1] for proc in procs]
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
    for proc, err in zip(procs, errors):
        assert proc.returncode == expect, err[-3000:]
    if expect:
        return errors
    paths = [out] if processes == 1 else [out.replace(".npz", f".p{i}.npz") for i in range(processes)]
    return [dict(np.load(path)) for path in paths]


def variables(result: dict, run: int = 0) -> list[np.ndarray]:
    return [result[f"{run}/leaf_{i}"] for i in range(len(result[f"{run}/leaf_run"]))]


def losses(result: dict, run: int, phase: int, key: str = "train_loss") -> np.ndarray:
    """Per-step `key` of one phase (0 = SAL's first level, ...) of mesh run `run`."""
    return result[f"{run}/{key}"][result[f"{run}/row_run"] == phase]


def max_diff(a: list[np.ndarray], b: list[np.ndarray]) -> float:
    assert [x.shape for x in a] == [y.shape for y in b]
    return max(float(np.abs(x - y).max()) for x, y in zip(a, b))


def assert_same_run(got: dict, want: dict, got_run: int = 0, want_run: int = 0, tolerance: float = TOLERANCE
                    ) -> float:
    """Same per-step train losses, test losses and final variables within `tolerance`; returns the
    largest parameter difference."""
    for key in ("train_loss", "test_loss"):
        np.testing.assert_allclose(got[f"{got_run}/{key}"], want[f"{want_run}/{key}"], rtol=0, atol=tolerance)
    diff = max_diff(variables(got, got_run), variables(want, want_run))
    assert diff < tolerance
    return diff


@pytest.fixture(scope="module")
def meshes(tmp_path_factory) -> dict:
    """The ladder on each of MESHES, then ROUND_2, in one process with 8 devices."""
    out = str(tmp_path_factory.mktemp("meshes") / "meshes.npz")
    (result,) = run_processes({"runs": MESHES + ROUND_2 + [CHUNKED_RUN] + GLAI_RUNS + SPARSE_RUNS + NNX_RUNS,
                               "out": out},
                              processes=1, devices=8)
    return result


def test_same_losses_and_params_on_1_2_4_8_devices_and_with_fsdp(meshes):
    diffs = {}
    for i, mesh in enumerate(MESHES):
        devices = 8 if mesh["data"] == -1 else mesh["data"] * mesh["fsdp"]
        assert (meshes[f"{i}/mesh_devices"] == devices).all()       # every variable lives on the whole mesh
        assert (meshes[f"{i}/compiles"] == 1).all()                 # one train and one eval compile per level
        assert (meshes[f"{i}/fsdp_split"] > 0) == (mesh["fsdp"] > 1)  # the 64x64 kernels really are split
        diffs[i] = assert_same_run(meshes, meshes, i, ONE)
    print(f"max |param difference| vs 1 device: {diffs}")
    assert losses(meshes, ONE, 1)[-1] < 0.75 * losses(meshes, ONE, 1)[0]  # the guided level learns


def test_two_rounds_agree_on_one_device_and_on_eight_with_fsdp(meshes):
    assert [len(losses(meshes, FSDP_R2, phase)) for phase in range(5)] == [4, 4, 4, 4, 8]  # + the baseline
    assert (meshes[f"{FSDP_R2}/compiles"] == 1).all() and (meshes[f"{FSDP_R2}/mesh_devices"] == 8).all()
    print(f"max |param difference|, 2 rounds, 4x2 vs 1 device: {assert_same_run(meshes, meshes, FSDP_R2, ONE_R2)}")
    # Round 2 continued level 1 (cross-entropy only) from round 1: it starts where round 1 ended.
    assert losses(meshes, ONE_R2, 2)[0] < 0.75 * losses(meshes, ONE_R2, 0)[0]


def test_two_processes_match_one_process_with_eight_devices(meshes, tmp_path):
    first, second = run_processes({"runs": [MESHES[EIGHT]], "out": str(tmp_path / "two.npz")}, processes=2, devices=4)
    assert (first["0/mesh_devices"] == 8).all() and (first["0/compiles"] == 1).all()
    for key in first:  # metrics and (gathered) variables are the same on both processes
        np.testing.assert_array_equal(first[key], second[key])
    print(f"max |param difference|, 2 processes vs 1: {assert_same_run(first, meshes, 0, EIGHT)}")


def test_glai_levels_agree_on_one_device_eight_with_fsdp_and_two_processes(meshes, tmp_path):
    """A GLAI ladder: the same structure-phase flips (so the same freeze), losses and variables on every
    topology; on 4 x 2 FSDP the frozen structure is split like the params."""
    assert (meshes[f"{GLAI_FSDP}/fsdp_split"] > meshes[f"{FSDP}/fsdp_split"]).all()  # structure kernels too
    assert (meshes[f"{GLAI_FSDP}/compiles"] == 1).all() and (meshes[f"{GLAI_FSDP}/mesh_devices"] == 8).all()
    flips = meshes[f"{GLAI_ONE}/structure_flips"]
    assert (flips >= 0).sum() >= 3  # each of the 3 trainings measured at least one structure epoch
    np.testing.assert_array_equal(meshes[f"{GLAI_FSDP}/structure_flips"], flips)
    print(f"max |param difference|, GLAI, 4x2 vs 1 device: {assert_same_run(meshes, meshes, GLAI_FSDP, GLAI_ONE)}")
    first, second = run_processes({"runs": [GLAI_RUNS[1]], "out": str(tmp_path / "glai.npz")}, processes=2, devices=4)
    for key in first:
        np.testing.assert_array_equal(first[key], second[key])
    np.testing.assert_array_equal(first["0/structure_flips"], flips)
    print(f"max |param difference|, GLAI, 2 processes vs 1: {assert_same_run(first, meshes, 0, GLAI_FSDP)}")


def test_sparse_levels_agree_on_one_device_and_eight_with_fsdp(meshes):
    """Masks split over "fsdp" like their kernels; the same evolution (live connections per epoch), losses
    and variables, masks included, on both."""
    assert (meshes[f"{SPARSE_FSDP}/fsdp_split"] > meshes[f"{FSDP}/fsdp_split"]).all()  # the masks too
    assert (meshes[f"{SPARSE_FSDP}/compiles"] == 1).all() and (meshes[f"{SPARSE_FSDP}/mesh_devices"] == 8).all()
    connections = meshes[f"{SPARSE_ONE}/connections"]
    assert (connections > 0).all() and len(set(connections)) > 2  # recorded every epoch; pruning lowers them
    np.testing.assert_array_equal(meshes[f"{SPARSE_FSDP}/connections"], connections)
    print(f"max |param difference|, sparse, 4x2 vs 1 device: {assert_same_run(meshes, meshes, SPARSE_FSDP, SPARSE_ONE)}")


def test_nnx_levels_agree_on_one_device_and_eight_with_fsdp(meshes):
    """An NNX ladder with BatchNorm over the global batch and Dropout: the same losses and variables
    (statistics and RNG streams included) on 4 x 2 FSDP as on one device, its kernels split over "fsdp",
    each step compiled once. (Its Linear layers before BatchNorm have no bias, as is usual: such a bias has
    no gradient but rounding noise, which Adam scales to full steps, so it would drift apart by mesh.)"""
    assert meshes[f"{NNX_FSDP}/fsdp_split"] > 0
    assert (meshes[f"{NNX_FSDP}/compiles"] == 1).all() and (meshes[f"{NNX_FSDP}/mesh_devices"] == 8).all()
    # BatchNorm's statistics over the global batch add up in another order on each mesh: measured 1.08e-5
    # on an Intel Xeon (2026-12-03), under 1e-5 on the AMD EPYC before (its vector code rounds otherwise).
    print(f"max |param difference|, NNX, 4x2 vs 1 device: "
          f"{assert_same_run(meshes, meshes, NNX_FSDP, NNX_ONE, tolerance=2 * TOLERANCE)}")


def test_two_processes_run_calls_of_several_steps_like_one_process(meshes, tmp_path):
    """... and process 0 alone writes the TensorBoard events: one file per phase."""
    first, second = run_processes({"runs": [CHUNKED_RUN], "out": str(tmp_path / "chunked.npz"),
                                   "log_dir": str(tmp_path / "tensorboard")}, processes=2, devices=4)
    phases = sorted((tmp_path / "tensorboard").iterdir())
    assert [p.name for p in phases] == ["level1", "level2", "plain_epoch_matched"]
    assert all(len(list(p.iterdir())) == 1 for p in phases)
    assert (first["0/compiles"] == 1).all() and (meshes[f"{CHUNKED}/compiles"] == 1).all()  # the ragged call too
    for key in first:
        np.testing.assert_array_equal(first[key], second[key])
    assert [len(losses(first, 0, phase)) for phase in range(3)] == [4, 4, 4]  # 4 epochs of each phase (2 levels, the baseline)
    print(f"max |param difference|, 2 processes vs 1, 3 steps a call: {assert_same_run(first, meshes, 0, CHUNKED)}")


@pytest.fixture(scope="module")
def eight_device_checkpoint(tmp_path_factory) -> Path:
    """A run on 8 devices (4 x 2 FSDP, so the saved arrays are split) stopped by SIGTERM mid-level 2."""
    directory = tmp_path_factory.mktemp("ckpt8")
    errors = run_processes({"runs": [MESHES[FSDP]], "out": str(directory / "unused.npz"), "term_at": TERM_AT,
                            "checkpoint_dir": str(directory / "run")}, processes=1, devices=8, expect=143)
    assert f"saved after training step {TERM_AT + 1}" in errors[0]
    return directory / "run"


@pytest.mark.parametrize("processes, devices", [(1, 1), (2, 4)])
def test_checkpoint_from_eight_devices_resumes_on_other_topologies(meshes, eight_device_checkpoint, tmp_path,
                                                                   processes, devices):
    directory = tmp_path / "run"
    shutil.copytree(eight_device_checkpoint, directory)
    results = run_processes({"runs": [{"data": -1, "fsdp": 1}], "out": str(tmp_path / "resumed.npz"),
                             "checkpoint_dir": str(directory)}, processes, devices)
    for result in results:
        assert (result["0/mesh_devices"] == processes * devices).all()
        # Level 1 finished before the stop: restored from the sharded arrays bit for bit, on any topology.
        level_1 = result["0/leaf_run"] == 0
        for got, want, first in zip(variables(result), variables(meshes, FSDP), level_1):
            if first:
                np.testing.assert_array_equal(got, want)
        # Steps 1-6 ran on 4 x 2 devices, the rest here: within float rounding of either uninterrupted run.
        print(f"max |param difference|, resumed on {processes} x {devices}: vs uninterrupted 4x2 "
              f"{assert_same_run(result, meshes, 0, FSDP)}, vs 1 device {assert_same_run(result, meshes, 0, ONE)}")


def test_sigterm_to_one_process_stops_all_at_the_same_step_then_resumes_on_one_device(meshes, tmp_path):
    directory = str(tmp_path / "run")
    errors = run_processes({"runs": [MESHES[FSDP]], "out": str(tmp_path / "unused.npz"), "term_at": TERM_AT,
                            "checkpoint_dir": directory}, processes=2, devices=4, expect=143)
    # Only process 0 got the signal. JAX's preemption service picks the sync step asynchronously (the first
    # step no process has reached when it hears of the signal), so it may be any step after TERM_AT, but it
    # must be the same on every process.
    stopped = [re.search(r"preempted \(SIGTERM\): saved after training step (\d+), in ", err) for err in errors]
    assert all(stopped), errors
    steps = {int(match.group(1)) for match in stopped}
    assert len(steps) == 1 and min(steps) > TERM_AT, steps
    (result,) = run_processes({"runs": [{"data": -1, "fsdp": 1}], "out": str(tmp_path / "resumed.npz"),
                               "checkpoint_dir": directory}, processes=1, devices=1)
    assert_same_run(result, meshes, 0, ONE)


def test_sigterm_in_round_2_on_eight_devices_resumes_on_two_processes(meshes, tmp_path):
    """Saved mid-round-2 on 4 x 2 FSDP (the round-1 variables inside the checkpoint are split arrays),
    resumed as 2 processes x 4 devices: the same run as the uninterrupted 4 x 2 one, within rounding."""
    directory, term_at = str(tmp_path / "run"), 11
    errors = run_processes({"runs": [ROUND_2[1]], "out": str(tmp_path / "unused.npz"), "term_at": term_at,
                            "checkpoint_dir": directory}, processes=1, devices=8, expect=143)
    assert f"saved after training step {term_at + 1}" in errors[0]
    results = run_processes({"runs": [{"data": -1, "fsdp": 1, "rounds": 2}], "out": str(tmp_path / "resumed.npz"),
                             "checkpoint_dir": directory}, processes=2, devices=4)
    for result in results:
        round_1 = result["0/leaf_run"] < 2  # finished before the stop: restored bit for bit
        for got, want, restored in zip(variables(result), variables(meshes, FSDP_R2), round_1):
            if restored:
                np.testing.assert_array_equal(got, want)
        print(f"max |param difference|, 2 rounds resumed on 2 x 4: {assert_same_run(result, meshes, 0, FSDP_R2)}")


# -- the rule, the batches and the errors, in this (1-device) process ------------------------------
def test_fsdp_rule_splits_the_largest_divisible_axis_of_big_arrays():
    assert parallel.partition_spec((64, 64), 4) == P("fsdp", None)       # ties: the first axis
    assert parallel.partition_spec((32, 96), 4) == P(None, "fsdp")
    assert parallel.partition_spec((3, 3, 64, 128), 8) == P(None, None, None, "fsdp")
    assert parallel.partition_spec((30, 100), 4) == P(None, "fsdp")      # 30 is not divisible by 4
    assert parallel.partition_spec((8, 64), 4) == P()                    # small: replicated
    assert parallel.partition_spec((33, 99), 4) == P()                   # nothing divisible: replicated
    assert parallel.partition_spec((64, 64), 1) == P()


def test_a_process_gathers_only_its_rows_of_each_global_batch():
    data = blobs()
    order = np.random.default_rng(0).permutation(len(data.x_test))
    rows = np.array([2, 3, 30, 31])  # e.g. its devices' shares; the last batch of 60 is padded at 28..31
    whole = list(batches(data.x_test, data.y_test, 32, order))
    share = list(batches(data.x_test, data.y_test, 32, order, rows=rows))
    assert len(whole) == len(share) == 2
    for a, b in zip(whole, share):
        for key in ("x", "y", "weight"):
            np.testing.assert_array_equal(a[key][rows], b[key])
    assert list(share[1]["weight"]) == [1, 1, 0, 0]
    sharding = parallel.step_shardings(parallel.make_mesh(child_config().parallel), {}).batch
    assert list(parallel.process_rows(sharding, 32)) == list(range(32))  # one process: every row


def test_mesh_errors_name_the_field():
    def shape(data, fsdp, devices=8, processes=1):
        config = child_config(data, fsdp).parallel
        return parallel.mesh_shape(config, devices, processes)

    assert shape(-1, 1) == (8, 1) and shape(-1, 4) == (2, 4) and shape(2, 2) == (2, 2)
    with pytest.raises(ConfigError, match=r"^config.parallel.fsdp: 3 does not divide the 8 available devices$"):
        shape(-1, 3)
    with pytest.raises(ConfigError, match=r"^config.parallel.data: a mesh of data=4 x fsdp=4 = 16 devices is larger "
                                          r"than the 8 available$"):
        shape(4, 4)
    with pytest.raises(ConfigError, match=r"^config.parallel.data: with 2 processes the mesh must use all 8 devices"):
        shape(2, 2, processes=2)
    with pytest.raises(ConfigError, match=r"^config.parallel.fsdp: must be a positive integer, got 0$"):
        shape(-1, 0)
    with pytest.raises(ConfigError, match=r"^config.train.batch_size: 100 is not divisible by the 8 devices of the "
                                          r"mesh \(config.parallel.data=4 x config.parallel.fsdp=2\)$"):
        parallel.check_batch_size(100, 4, 2)
    parallel.check_batch_size(96, 4, 2)


def test_a_mesh_larger_than_this_machine_stops_before_training(data, config):
    config.parallel.data = 2  # this process has one device
    with pytest.raises(ConfigError, match=r"config.parallel.data: a mesh of data=2 x fsdp=1 = 2 devices is larger"):
        train_ladder(make_ladder(config.model, data.num_classes), data, config)


def test_process_fields_are_checked_and_one_process_needs_no_coordinator():
    config = child_config().parallel
    config.num_processes = 1
    assert parallel.initialize_distributed(config) is False  # never touches jax.distributed
    config.num_processes, config.process_id = 2, 2
    with pytest.raises(ConfigError, match=r"^config.parallel.process_id: must be -1 \(detect\) or in \[0, num_processes\)"):
        parallel.initialize_distributed(config)


def test_cli_joins_no_cluster_and_reports_a_bad_mesh_in_one_line(tmp_path):
    """The command line calls initialize_distributed first (no cluster here: a single process), then
    validates the mesh against the devices before training."""
    out = subprocess.run([sys.executable, "-m", "sal_jax.main", "--config=experiments/configs/digits_mlp.py",
                          "--noprogress", "--config.parallel.data=4", f"--workdir={tmp_path}"],
                         cwd=ROOT, capture_output=True, text=True, timeout=120, env=child_env(1))
    assert out.returncode == 1, out.stderr[-2000:]
    assert out.stderr.strip().splitlines()[-1] == ("error: config.parallel.data: a mesh of data=4 x fsdp=1 = 4 "
                                                   "devices is larger than the 1 available")
    assert "Traceback" not in out.stderr


def test_split_batches_gathered_on_the_device_equal_those_gathered_on_the_host(data):
    mesh = parallel.make_mesh(child_config().parallel)  # this process: one device
    sharding = parallel.step_shardings(mesh, {}).batch
    arrays = {"x": data.x_train, "y": data.y_train, "teacher_logits": data.x_train[:, :3] * 2.0}
    order = np.random.default_rng(0).permutation(len(data.x_train))
    on_device = parallel.SplitBatches(arrays, 32, sharding, on_device_mb=1)
    on_host = parallel.SplitBatches(arrays, 32, sharding, on_device_mb=0)
    assert on_device.on_device and not on_host.on_device
    assert on_device.capacity == on_host.capacity == 5  # 150 = 4 * 32 + 22: the whole split fits one plan
    (device_plan, device_offset), (host_plan, host_offset) = on_device.plan(order, 1, 4), on_host.plan(order, 1, 4)
    assert (device_offset, host_offset) == (1, 0)  # the device keeps the whole pass; the host sends batches 1..4
    assert on_device.plan(order, 2, 1)[0] is device_plan  # ... once per pass (`order`)

    def batch(split, plan, row):
        return split.gather(split.source, jax.tree.map(lambda a: a[row], plan))

    for i in range(4):  # batches 1..4; the last is ragged
        device_batch, host_batch = batch(on_device, device_plan, device_offset + i), batch(on_host, host_plan, i)
        assert device_batch.keys() == host_batch.keys() == {"x", "y", "weight", "teacher_logits"}
        for key in host_batch:
            assert device_batch[key].dtype == host_batch[key].dtype
            np.testing.assert_array_equal(device_batch[key], host_batch[key])
    assert batch(on_host, host_plan, 3)["weight"].sum() == 22
    assert not np.asarray(host_plan["weight"][4]).any()  # the plan's unused row: never run, weight 0


def test_a_ladder_trains_bit_identically_with_its_data_on_the_device_or_on_the_host(data, config):
    levels = make_ladder(config.model, data.num_classes)
    config.baselines.time_matched = False
    on_device = train_ladder(levels, data, config)  # default: 150 examples fit
    config.parallel.data_on_device_mb = 0
    on_host = train_ladder(levels, data, config)
    assert_reproduced(on_device.levels, on_host.levels, atol=1e-5)  # the same program on the same batches
    assert_reproduced(on_device.plain_epoch_matched.variables, on_host.plain_epoch_matched.variables, atol=1e-5)
