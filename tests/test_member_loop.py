"""Members in the ladder (sal_jax.member_loop, sal_jax.ladder.train_members): each seed's results equal its
lone ladder's to float32 rounding, an ensemble repeats and resumes bit for bit, a member that goes
non-finite stops alone, and the command line's results keep one record per seed."""
import json

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


def test_an_ensemble_run_twice_gives_the_same_bits(data, config):
    levels = make_ladder(config.model, data.num_classes)
    first, second = (train_members(levels, data, config, SEEDS) for _ in range(2))
    for a, b in zip(first, second):
        assert_reproduced([r.variables for r in a.sal], [r.variables for r in b.sal], atol=1e-6)
        assert untimed(a.sal) == untimed(b.sal)


def test_an_ensemble_stopped_by_sigterm_resumes_bit_for_bit(data, config, tmp_path, monkeypatch):
    """Rounds 2, checkpoints every 5 steps, stopped mid-level of round 2; resumed, as the same ensemble
    uninterrupted; its TensorBoard has one run per member and phase."""
    config.train.rounds, config.checkpoint.every_steps = 2, 5
    levels = make_ladder(config.model, data.num_classes)
    stop_by_sigterm_after(monkeypatch, 50)  # 12 steps a level: inside round 2's level 2
    logs = [str(tmp_path / f"seed_{seed}") for seed in SEEDS]
    with pytest.raises(Preempted):
        train_members(levels, data, config, SEEDS, checkpoint_dir=str(tmp_path / "ckpt"), log_dirs=logs)
    monkeypatch.undo()
    resumed = train_members(levels, data, config, SEEDS, checkpoint_dir=str(tmp_path / "ckpt"), log_dirs=logs)
    uninterrupted = train_members(levels, data, config, SEEDS)
    for a, b in zip(resumed, uninterrupted):
        assert_reproduced([r.variables for r in a.sal + [a.plain_epoch_matched]],
                          [r.variables for r in b.sal + [b.plain_epoch_matched]], atol=1e-6)
        assert untimed(a.sal) == untimed(b.sal)
    for log in logs:
        runs = sorted(p.name for p in (tmp_path / log.split("/")[-1]).iterdir())
        assert runs == ["plain_epoch_matched", "plain_time_matched", "round1_level1", "round1_level2",
                        "round1_level3", "round2_level1", "round2_level2", "round2_level3"]


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


def _with_ensemble(config, ensemble):
    copy = config.copy_and_resolve_references()
    copy.train.ensemble = ensemble
    return copy
