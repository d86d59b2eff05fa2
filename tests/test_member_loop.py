"""Members in the ladder (sal_jax.member_loop, sal_jax.ladder.train_members): each seed's results equal its
lone ladder's to float32 rounding, an ensemble repeats and resumes bit for bit, a member that goes
non-finite stops alone, and the command line's results keep one record per seed."""
import json
import os

import jax
import numpy as np
import pytest

from promises import assert_reproduced
from sal_jax.checkpoint import Preempted
from sal_jax.hooks import Hook
from sal_jax.ladder import train_ladder, train_members
from sal_jax.models import make_ladder
from test_ladder import stop_by_sigterm_after

SEEDS = (0, 1, 2)
# A member's parameters against its lone ladder's, 3 levels of 3 epochs (12 steps each): largest measured
# on this project's CPU (jax 0.10.2) 3.6e-7 (level 3). Batched matmuls round differently (tests/test_members.py).
PARAMS_ATOL = 4e-6


def max_difference(a, b) -> float:
    return max(float(np.max(np.abs(np.asarray(x) - np.asarray(y)))) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


def untimed(runs):
    return [[{k: v for k, v in row.items() if k != "train_time"} for row in run.history] for run in runs]


def test_members_equal_lone_ladders_of_their_seeds_to_rounding(data, config):
    config.train.rounds = 2
    levels = make_ladder(config.model, data.num_classes)
    results = train_members(levels, data, config, SEEDS)
    for seed, result in zip(SEEDS, results):
        lone = train_ladder(levels, data, _with_seed(config, seed))
        runs = [*result.sal, result.plain_epoch_matched]
        for got, want in zip(runs, [*lone.sal, lone.plain_epoch_matched]):
            assert (got.name, got.round, got.level, got.steps) == (want.name, want.round, want.level, want.steps)
            assert max_difference(got.variables, want.variables) < PARAMS_ATOL, got.name
            for got_row, want_row in zip(got.history, want.history):
                assert got_row.keys() == want_row.keys()
                for key in got_row:
                    if key != "train_time":
                        np.testing.assert_allclose(got_row[key], want_row[key], rtol=1e-4, atol=1e-5, err_msg=key)
        # the time-matched baseline trains for the members' SAL time: the program's, shared by all
        assert result.plain_time_matched.history[-1]["train_time"] >= result.sal_train_time
        assert result.sal_train_time == results[0].sal_train_time


def _with_seed(config, seed):
    copy = config.copy_and_resolve_references()
    copy.seed = seed
    return copy


# Members with settings of their own (sal_jax.members.MEMBER_SETTINGS): seeds may repeat, each member's
# values differ; a λ of 0 is not among them (it changes the program).
SETTINGS = {"guidance.hidden_weight": (0.3, 3.0, 1.0), "guidance.output_weight": (1.0, 0.5, 2.0),
            "guidance.temperature": (2.0, 4.0, 8.0), "train.learning_rate": (3e-2, 1e-2, 5e-2)}
SETTINGS_SEEDS = (0, 0, 1)


def _configured(config, i):
    """The lone ladder's config of member i of SETTINGS_SEEDS / SETTINGS."""
    copy = _with_seed(config, SETTINGS_SEEDS[i])
    for key, values in SETTINGS.items():
        section, name = key.split(".")
        copy[section][name] = values[i]
    return copy


@pytest.mark.parametrize("optimizer", ["adam", "adamw"])
def test_members_with_settings_of_their_own_equal_lone_ladders_configured_with_them(data, config, optimizer):
    """λ_h, λ_o, T (a linear-decay schedule, so the weights are traced through it) and the learning rate
    (adamw: and its weight decay) per member, the same seed twice: each member is the lone ladder of
    its config, to rounding, in every phase, the plain baselines with the member's learning rate."""
    config.guidance.schedule, config.train.optimizer = "linear_decay", optimizer
    settings = dict(SETTINGS, **({"train.weight_decay": (1e-4, 0.1, 0.0)} if optimizer == "adamw" else {}))
    levels = make_ladder(config.model, data.num_classes)
    results = train_members(levels, data, config, SETTINGS_SEEDS, settings=settings)
    for i, result in enumerate(results):
        lone_config = _configured(config, i)
        if optimizer == "adamw":
            lone_config.train.weight_decay = settings["train.weight_decay"][i]
        lone = train_ladder(levels, data, lone_config)
        for got, want in zip([*result.sal, result.plain_epoch_matched], [*lone.sal, lone.plain_epoch_matched]):
            assert max_difference(got.variables, want.variables) < PARAMS_ATOL, (i, got.name)
            np.testing.assert_allclose(got.history[-1]["train_loss"], want.history[-1]["train_loss"], rtol=1e-4)
    # the same seed with other settings is another training
    assert max_difference(results[0].sal[1].variables, results[1].sal[1].variables) > 1e-3


def test_members_refuse_settings_that_change_the_program(data, config):
    from sal_jax.errors import ConfigError

    levels = make_ladder(config.model, data.num_classes)
    with pytest.raises(ConfigError, match="guidance.hidden_weight is 0 for some members"):
        train_members(levels, data, config, (0, 1), settings={"guidance.hidden_weight": (0.0, 1.0)})
    with pytest.raises(ConfigError, match="'guidance.distance' cannot differ between members"):
        train_members(levels, data, config, (0, 1), settings={"guidance.distance": ("mse", "cosine")})
    with pytest.raises(ConfigError, match="train.learning_rate of member 1 must be a number > 0"):
        train_members(levels, data, config, (0, 1), settings={"train.learning_rate": (1e-3, -1.0)})


def test_an_ensemble_run_twice_gives_the_same_bits(data, config):
    levels = make_ladder(config.model, data.num_classes)
    first, second = (train_members(levels, data, config, SEEDS) for _ in range(2))
    for a, b in zip(first, second):
        assert_reproduced([r.variables for r in a.sal], [r.variables for r in b.sal], atol=1e-6)
        assert untimed(a.sal) == untimed(b.sal)


@pytest.mark.parametrize("settings", [{}, SETTINGS], ids=["seeds", "settings"])
def test_an_ensemble_stopped_by_sigterm_resumes_bit_for_bit(data, config, tmp_path, monkeypatch, settings):
    """Rounds 2, checkpoints every 5 steps, stopped mid-level of round 2; resumed, as the same ensemble
    uninterrupted (members of their own settings too: the learning rates live in the checkpointed
    optimizer state); its TensorBoard has one run per member and phase. Resuming other members fails."""
    config.train.rounds, config.checkpoint.every_steps = 2, 5
    seeds = SETTINGS_SEEDS if settings else SEEDS
    levels = make_ladder(config.model, data.num_classes)
    stop_by_sigterm_after(monkeypatch, 50)  # 12 steps a level: inside round 2's level 2
    logs = [str(tmp_path / f"member_{i}") for i in range(len(seeds))]
    with pytest.raises(Preempted):
        train_members(levels, data, config, seeds, checkpoint_dir=str(tmp_path / "ckpt"), log_dirs=logs,
                      settings=settings)
    monkeypatch.undo()
    from sal_jax.errors import ConfigError
    with pytest.raises(ConfigError, match="trained other members"):
        train_members(levels, data, config, (5, 6, 7), checkpoint_dir=str(tmp_path / "ckpt"))
    resumed = train_members(levels, data, config, seeds, checkpoint_dir=str(tmp_path / "ckpt"), log_dirs=logs,
                            settings=settings)
    uninterrupted = train_members(levels, data, config, seeds, settings=settings)
    for a, b in zip(resumed, uninterrupted):
        assert_reproduced([r.variables for r in a.sal + [a.plain_epoch_matched]],
                          [r.variables for r in b.sal + [b.plain_epoch_matched]], atol=1e-6)
        assert untimed(a.sal) == untimed(b.sal)
    for log in logs:
        runs = sorted(p.name for p in (tmp_path / log.split("/")[-1]).iterdir())
        assert runs == ["plain_compute_matched", "plain_epoch_matched", "plain_time_matched", "round1_level1", "round1_level2",
                        "round1_level3", "round2_level1", "round2_level2", "round2_level3"]


def test_an_ensemble_stopped_on_one_device_resumes_on_eight(data, config, tmp_path, monkeypatch):
    """4 members (2 seeds x 2 values of λ_h) checkpointed on 1 device and stopped in round 2; resumed on 8
    simulated devices (tests/member_ladder_child.py), the members over an ensemble axis of 4 and each
    member's batch over a data axis of 2 (config.parallel.data = 2): every member's levels equal the same
    ensemble's uninterrupted run on 1 device to rounding."""
    config.train.rounds, config.checkpoint.every_steps = 2, 5
    seeds, settings = (0, 1, 0, 1), {"guidance.hidden_weight": (1.0, 1.0, 0.3, 0.3)}
    levels = make_ladder(config.model, data.num_classes)
    stop_by_sigterm_after(monkeypatch, 50)
    with pytest.raises(Preempted):
        train_members(levels, data, config, seeds, checkpoint_dir=str(tmp_path / "ckpt"), settings=settings)
    monkeypatch.undo()
    (resumed,) = run_children({"config": config.to_dict(), "seeds": seeds, "settings": settings, "parallel_data": 2,
                               "checkpoint_dir": str(tmp_path / "ckpt")}, tmp_path, devices=8, must_say="resuming")
    assert {tuple(shape) for shape in resumed["meshes"]} == {(4, 2)}
    uninterrupted = train_members(levels, data, config, seeds, settings=settings)
    print(f"resumed on 8 devices vs 1: largest parameter difference {largest_difference(resumed, uninterrupted):.2g}")
    assert largest_difference(resumed, uninterrupted) < PARAMS_ATOL


@pytest.mark.skipif(os.environ.get("SAL_JAX_TEST_MULTIPROCESS_MEMBERS") != "1",
                    reason="opt-in (SAL_JAX_TEST_MULTIPROCESS_MEMBERS=1): passed alone and beside other tests here, "
                           "but a CI run once saw its first child silent for 600 s; under investigation (issue #26)")
def test_members_split_over_two_processes_equal_one_process(data, config, tmp_path):
    """4 members (2 seeds x 2 learning rates) over 2 processes of 2 devices each (jax.distributed, the
    ensemble axis across both): each process holds every member's results, equal to one process's to
    rounding; process 0 writes each member's TensorBoard run."""
    config.baselines.time_matched = False  # its length follows the clock
    seeds, settings = (0, 1, 0, 1), {"train.learning_rate": (3e-2, 3e-2, 1e-2, 1e-2)}
    first, second = run_children({"config": config.to_dict(), "seeds": seeds, "settings": settings,
                                  "log_dir": str(tmp_path / "tensorboard")}, tmp_path, devices=2, processes=2)
    assert {tuple(shape) for shape in first["meshes"]} == {(4, 1)} and set(first["processes"]) == {2}
    for key in first:
        np.testing.assert_array_equal(first[key], second[key])
    one = train_members(make_ladder(config.model, data.num_classes), data, config, seeds, settings=settings)
    print(f"2 processes vs 1: largest parameter difference {largest_difference(first, one):.2g}")
    assert largest_difference(first, one) < PARAMS_ATOL
    assert sorted(p.name for p in (tmp_path / "tensorboard").iterdir()) == [f"member_{i}" for i in range(4)]
    assert sorted(p.name for p in (tmp_path / "tensorboard" / "member_3").iterdir()) == [
        "level1", "level2", "level3", "plain_compute_matched", "plain_epoch_matched"]


def run_children(spec: dict, tmp_path, devices: int, processes: int = 1, must_say: str = "") -> list:
    """tests/member_ladder_child.py as `processes` processes of `devices` simulated devices: their outputs."""
    import os
    import socket
    import subprocess
    import sys
    from pathlib import Path

    if processes > 1:
        with socket.socket() as s:  # a free port for the coordinator
            s.bind(("127.0.0.1", 0))
            spec = {**spec, "num_processes": processes, "port": s.getsockname()[1]}
    env = dict(os.environ, XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}", JAX_PLATFORMS="cpu")
    child, out = Path(__file__).resolve().parent / "member_ladder_child.py", tmp_path / "out.npz"
    procs = []
    for i in range(processes):
        (tmp_path / f"spec{i}.json").write_text(json.dumps({**spec, "process_id": i}))
        procs.append(subprocess.Popen([sys.executable, str(child), str(tmp_path / f"spec{i}.json"), str(out)],
                                      env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True))
    try:
        errors = [proc.communicate(timeout=600)[1] for proc in procs]
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
    for proc, error in zip(procs, errors):
        assert proc.returncode == 0 and must_say in error, error[-3000:]
    paths = [out] if processes == 1 else [tmp_path / f"out.p{i}.npz" for i in range(processes)]
    return [dict(np.load(path)) for path in paths]


def largest_difference(saved: dict, results) -> float:
    """The largest difference between a child's saved SAL level variables and `results`' (per member)."""
    largest = 0.0
    for i, result in enumerate(results):
        for j, run in enumerate(result.sal):
            for path, leaf in jax.tree_util.tree_flatten_with_path(run.variables)[0]:
                got = saved[f"{i}/{j}/{jax.tree_util.keystr(path)}"]
                largest = max(largest, float(np.max(np.abs(got - np.asarray(leaf)))))
    return largest


class PoisonMember(Hook):
    """Sets one member's weights to NaN after the first epoch of level `level`."""

    def __init__(self, member: int, level: int):
        self.member, self.level = member, level

    def between_epochs(self, loop):
        if loop.plan.level != self.level or loop.progress.epoch != 1 or loop.plan.name.startswith("plain"):
            return None
        params = jax.tree.map(lambda a: a.at[self.member].set(np.nan), loop.state.params)
        return loop.state.replace(params=params)


def test_a_member_that_goes_non_finite_stops_alone_and_says_where(data, config, capsys):
    levels = make_ladder(config.model, data.num_classes)
    clean = train_members(levels, data, config, SEEDS)
    poisoned = train_members(levels, data, config, SEEDS, hooks=[PoisonMember(1, 2)])
    failed = poisoned[1]
    level2 = failed.sal[1]
    assert level2.failure.startswith("SAL r1 L2, seed 1 (level 2, round 1), training step 5: the ce and hidden and output terms")
    assert level2.steps == 4  # frozen at its first step after the poison (4 steps an epoch)
    assert failed.sal[2].failure == "frozen: it failed in an earlier phase" and failed.sal[2].steps == 0
    assert not failed.sal[0].failure and not failed.plain_epoch_matched.failure  # before it, and its baseline
    assert "warning: member SAL r1 L2, seed 1" in capsys.readouterr().err
    for i in (0, 2):  # the others as if nothing happened
        assert_reproduced([r.variables for r in poisoned[i].sal], [r.variables for r in clean[i].sal], atol=1e-6)
        assert all(not r.failure for r in poisoned[i].sal)


def test_the_command_line_trains_seed_groups_as_members_with_one_record_per_seed(tmp_path):
    from sal_jax.train import train_and_evaluate
    from sal_jax.config import default_config

    config = default_config()
    config.model.levels, config.model.width = (1, 2), 16
    config.train.epochs, config.num_seeds, config.train.ensemble = 2, 3, 2  # groups (0, 1) and (2,)
    config.data.per_class = 20
    results = train_and_evaluate(config, str(tmp_path), progress=False)
    runs = results["cells"][0]["runs"]
    assert [r["seed"] for r in runs] == [0, 1, 2]
    saved = json.loads((tmp_path / "results.json").read_text())["cells"][0]["runs"]
    assert all("failure" not in run for record in saved for run in record["sal"])
    (cell,) = [p for p in (tmp_path / "checkpoints").iterdir() if p.is_dir()]
    assert sorted(p.name for p in cell.iterdir()) == ["seed_2", "seeds_0-1"]
    assert sorted(p.name for p in (tmp_path / "tensorboard" / cell.name).iterdir()) == ["seed_0", "seed_1", "seed_2"]
    lone = train_and_evaluate(_with_ensemble(config, 1), str(tmp_path / "lone"), progress=False)
    for got, want in zip(runs, lone["cells"][0]["runs"]):  # to rounding: at most one test example apart
        for a, b in zip(got["sal"], want["sal"]):
            assert abs(a["final_test_accuracy"] - b["final_test_accuracy"]) <= 1 / 500


def test_a_sweep_over_member_settings_trains_as_one_program_with_one_record_per_point_and_seed(tmp_path):
    """A grid of λ_h x learning rate (4 points) x 2 seeds, ensemble 0: one program of 8 members; a point
    with another distance trains in a program of its own. Every cell's records equal the sequential
    path's (ensemble 1) to rounding; checkpoints one folder per program, TensorBoard one per training."""
    from sal_jax.config import default_config
    from sal_jax.train import train_and_evaluate

    config = default_config()
    config.model.levels, config.model.width = (1, 2), 16
    config.train.epochs, config.num_seeds, config.train.ensemble, config.data.per_class = 2, 2, 0, 20
    config.baselines.time_matched = False  # a wall-clock budget is not comparable between the two ways
    config.sweep.grid = (("guidance.hidden_weight", (0.5, 2.0)), ("train.learning_rate", (1e-3, 3e-3)))
    config.sweep.points = ((("guidance.distance", "cosine"),),)
    results = train_and_evaluate(config, str(tmp_path), progress=False)
    folders = sorted(str(p.relative_to(tmp_path / "checkpoints")) for p in (tmp_path / "checkpoints").glob("*/*"))
    assert folders == ["pc20_distancecosine/seeds_0-1", "pc20_hidden_weight0.5_learning_rate0.001_and_3_more/from_seed_0"]
    cells = results["cells"]
    assert [c["point"] for c in cells][-1] == {"guidance.distance": "cosine"} and len(cells) == 5
    assert all([r["seed"] for r in c["runs"]] == [0, 1] for c in cells)
    logs = sorted(p.name for p in (tmp_path / "tensorboard").iterdir())
    assert len(logs) == 5 and all(sorted(q.name for q in (tmp_path / "tensorboard" / name).iterdir())
                                  == ["seed_0", "seed_1"] for name in logs)
    sequential = train_and_evaluate(_with_ensemble(config, 1), str(tmp_path / "sequential"), progress=False)
    for cell, want_cell in zip(cells, sequential["cells"]):
        for got, want in zip(cell["runs"], want_cell["runs"]):
            for a, b in zip([*got["sal"], got["plain_epoch_matched"]], [*want["sal"], want["plain_epoch_matched"]]):
                assert abs(a["final_test_accuracy"] - b["final_test_accuracy"]) <= 1 / 500, (cell["point"], a["name"])
                np.testing.assert_allclose(a["history"][-1]["train_loss"], b["history"][-1]["train_loss"], rtol=1e-4)


def _with_ensemble(config, ensemble):
    copy = config.copy_and_resolve_references()
    copy.train.ensemble = ensemble
    return copy


def family_case(family: str):
    """(levels, data, config) of a quick 2-level ladder of `family` (digits or token sequences)."""
    from sal_jax.config import default_config
    from sal_jax.data import load_dataset
    from sal_jax.data.arrays import ArrayDataset
    from test_members import tokens

    config = default_config()
    config.model.family = "mlp" if family == "nnx" else family
    config.model.levels, config.model.width, config.model.channels = (1, 2), 16, (4, 8)
    config.model.dim, config.model.heads, config.model.hidden, config.model.embed_dim = 16, 2, 16, 16
    config.model.patch = 2
    config.train.epochs, config.train.batch_size, config.train.learning_rate = 2, 32, 3e-3
    config.baselines.time_matched = False
    config.data.augment = family == "cnn"  # each member its own augmentation key
    if family in ("rnn", "transformer"):
        data = tokens(200)
    else:
        full = load_dataset(config.data, config.model.family)
        data = ArrayDataset(full.name, full.x_train[:256], full.y_train[:256], full.x_test[:100], full.y_test[:100],
                            num_classes=10)
    if family == "nnx":
        from nnx_models import resnet_ladder
        return resnet_ladder((1, 2), 64, 16, 10), data, config
    return make_ladder(config.model, data.num_classes, data.vocab_size), data, config


# The Transformer's, seed 1, measured 2.0e-5 in block_0/mlp_in's kernel (its other leaves < 6e-7): Adam
# divides by the root of the squared gradients, so where a unit's gradient is nearly 0 on this tiny data,
# rounding noise becomes a step of learning-rate size (as in the attention key bias, left out).
FAMILY_ATOL = {"transformer": 1e-4}


@pytest.mark.parametrize("family", ["cnn", "rnn", "transformer", "vit", "nnx"])
def test_members_of_every_stackable_family_equal_their_lone_ladders(family):
    """CNN with BatchNorm and augmentation, GRU, Transformer, ViT, an NNX ResNet with BatchNorm and Dropout:
    each seed's SAL levels and baseline, as members, equal its lone ladder's to rounding."""
    levels, data, config = family_case(family)
    results = train_members(levels, data, config, (0, 1))
    for seed, result in zip((0, 1), results):
        lone = train_ladder(levels, data, _with_seed(config, seed))
        for got, want in zip([*result.sal, result.plain_epoch_matched], [*lone.sal, lone.plain_epoch_matched]):
            assert got.steps == want.steps
            difference = max_difference(without_attention_keys(got.variables), without_attention_keys(want.variables))
            assert difference < FAMILY_ATOL.get(family, PARAMS_ATOL), (family, got.name, difference)
            for key in ("train_ce", "test_loss"):
                np.testing.assert_allclose([r[key] for r in got.history if key in r],
                                           [r[key] for r in want.history if key in r], rtol=1e-4, err_msg=key)


def without_attention_keys(variables):
    """The variables but an attention layer's key bias: its exact gradient is zero (softmax ignores a shift
    of every score), so Adam turns rounding noise into steps of learning-rate size (tests/test_members.py)."""
    flat = jax.tree_util.tree_flatten_with_path(variables)[0]
    return [leaf for path, leaf in flat if "key" not in jax.tree_util.keystr(path)]
