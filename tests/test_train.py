"""The main job end to end (tiny settings) and the command line's handling of bad input."""
import json
import pathlib
import subprocess
import sys

import pytest

from sal_jax import train
from sal_jax.checkpoint import Preempted
from sal_jax.train import train_and_evaluate

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "experiments" / "configs"))
import digits_mlp  # noqa: E402


def test_digits_main_job_writes_json_table_and_plot(tmp_path):
    config = digits_mlp.get_config()
    config.model.levels, config.model.width = (1, 2), 16
    config.train.epochs, config.num_seeds = 1, 2
    results = train_and_evaluate(config, str(tmp_path), progress=False)
    saved = json.loads((tmp_path / "results.json").read_text())
    (cell,) = saved["cells"]
    assert [run["seed"] for run in cell["runs"]] == [0, 1]
    # majority: the test split's most frequent class, 55 of 540 examples
    assert cell["dataset"] == {"name": "digits", "train": 1257, "test": 540, "majority": 55 / 540}
    # 64 pixels -> 16 (-> 16) -> 10 classes, weights and biases
    assert [run["num_params"] for run in cell["runs"][0]["sal"]] == [64 * 16 + 16 + 16 * 10 + 10,
                                                                    64 * 16 + 16 + 16 * 16 + 16 + 16 * 10 + 10]
    table = (tmp_path / "results.md").read_text()
    for row in ("| SAL level 1 | 1,210 |", "| SAL level 2 (bottom) | 1,482 |", "| plain, epoch-matched | 1,482 |",
                "| plain, time-matched | 1,482 |"):
        assert row in table
    assert table == results["table"]
    for plot in ("accuracy_vs_time_full.png", "grad_norms_full.png", "level_accuracy.png"):
        assert (tmp_path / plot).read_bytes()[:4] == b"\x89PNG"


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "sal_jax.main", "--config=experiments/configs/digits_mlp.py",
                           "--noprogress", *args], cwd=ROOT, capture_output=True, text=True, timeout=120)


def test_cli_reports_a_bad_config_in_one_line_without_traceback(tmp_path):
    out = run_cli("--config.train.epochs=0", f"--workdir={tmp_path}")
    assert out.returncode == 1
    assert out.stderr.strip().splitlines()[-1] == "error: config.train.epochs: must be a positive integer, got 0"
    assert "Traceback" not in out.stderr
    assert not (tmp_path / "results.json").exists()


@pytest.mark.parametrize("rounds", [2, 3])
def test_cli_finishes_a_multi_round_ladder_with_checkpoints_and_ablations(tmp_path, rounds):
    """Rounds >= 2 with checkpoints every few steps (the CLI default is on) once crashed at round 2's
    first save: round 1's variables had been donated to round 2's first step. The rerun resumes every
    ladder run at its end and writes the same results. The compilation cache fills."""
    args = [f"--config.train.rounds={rounds}", "--config.model.levels=(1, 2)", "--config.model.width=16",
            "--config.train.epochs=1", "--config.num_seeds=1", "--config.ablations=True",
            "--config.checkpoint.every_steps=7", f"--workdir={tmp_path}", f"--compilation_cache={tmp_path / 'xla'}"]
    first = run_cli(*args)
    assert first.returncode == 0, first.stderr[-3000:]
    assert any((tmp_path / "xla").iterdir())  # compiled programs kept for the seeds, baselines and reruns
    runs = json.loads((tmp_path / "results.json").read_text())["cells"][0]["runs"][0]
    for ladder in (runs, runs["hidden_only"], runs["output_only"]):
        assert [(run["round"], run["level"]) for run in ladder["sal"]] == [(r, k) for r in range(1, rounds + 1)
                                                                          for k in (1, 2)]
    assert runs["plain_epoch_matched"]["steps"] == rounds * 19  # 1257 // 64 steps per epoch
    again = run_cli(*args)
    assert again.returncode == 0, again.stderr[-3000:]
    assert again.stderr.count("at the end: nothing to do") == 3  # SAL and both ablations
    results = json.loads((tmp_path / "results.json").read_text())
    rerun = results["cells"][0]["runs"][0]
    assert [run["history"] for run in rerun["sal"]] == [run["history"] for run in runs["sal"]]
    first_time = json.loads((tmp_path / "checkpoints" / "wall_times.json").read_text())[0]
    assert len(results["wall_times"]) == 2 and results["wall_times"][0] == first_time  # kept, not overwritten
    assert results["wall_time"] == sum(results["wall_times"])
    assert list(tmp_path.rglob("*.orbax-checkpoint-tmp*")) == []


def test_wall_time_sums_every_invocation_including_a_stopped_one(tmp_path, monkeypatch):
    """The first invocation stops (as after SIGTERM) in its second seed; the rerun resumes: wall_time is
    the sum of both invocations' times, the stopped one's included."""
    config = digits_mlp.get_config()
    config.model.levels, config.model.width = (1,), 16
    config.train.epochs, config.num_seeds, config.tensorboard = 1, 2, False
    config.baselines.epoch_matched = config.baselines.time_matched = False
    run_group = train.run_group

    def stop_in_seed_1(levels, data, configs, *args):
        if configs[0].seed == 1:
            raise Preempted("preempted")
        return run_group(levels, data, configs, *args)

    monkeypatch.setattr(train, "run_group", stop_in_seed_1)
    with pytest.raises(Preempted):
        train_and_evaluate(config, str(tmp_path), progress=False)
    (stopped,) = json.loads((tmp_path / "checkpoints" / "wall_times.json").read_text())
    monkeypatch.setattr(train, "run_group", run_group)
    results = train_and_evaluate(config, str(tmp_path), progress=False)
    assert results["wall_times"][0] == stopped > 0 and len(results["wall_times"]) == 2
    assert json.loads((tmp_path / "results.json").read_text())["wall_time"] == sum(results["wall_times"])


def _point_configs(points, **train):
    from sal_jax.config import default_config, with_values

    base = default_config()
    base.num_seeds = 2
    for key, value in train.items():
        base.train[key] = value
    return [with_values(base, point) for point in points]


def test_program_groups_put_points_that_differ_in_member_settings_in_one_program():
    """Cells 0, 2, 3 differ in λ_h, T and the learning rate only: one program (ensemble 0), or chunks
    of 3 in cell-then-seed order; cell 1 (cosine) and cell 4 (λ_h = 0: no hidden term) compile their own."""
    points = [{}, {"guidance.distance": "cosine"}, {"guidance.hidden_weight": 0.3, "guidance.temperature": 2.0},
              {"train.learning_rate": 3e-3}, {"guidance.hidden_weight": 0.0}]
    assert train.program_groups(_point_configs(points, ensemble=0)) == [
        [(0, 0), (0, 1), (2, 0), (2, 1), (3, 0), (3, 1)], [(1, 0), (1, 1)], [(4, 0), (4, 1)]]
    assert train.program_groups(_point_configs(points, ensemble=3)) == [
        [(0, 0), (0, 1), (2, 0)], [(1, 0), (1, 1)], [(2, 1), (3, 0), (3, 1)], [(4, 0), (4, 1)]]
    assert train.program_groups(_point_configs(points, ensemble=1)) == [
        [(cell, seed)] for cell in range(5) for seed in (0, 1)]
    assert train.group_folder(["a", "b", "c", "d", "e"], [(2, 1), (3, 0), (3, 1)]) == "c_and_1_more/from_seed_1"
    assert train.group_folder(["a", "b"], [(1, 0), (1, 1)]) == "b/seeds_0-1"


def test_program_groups_train_a_family_that_cannot_stack_in_turn(capsys):
    (config,) = _point_configs([{"model.family": "glai"}], ensemble=0)
    train._note_in_turn.cache_clear()  # said once a run: this test's run starts here
    assert train.program_groups([config]) == [[(0, 0)], [(0, 1)]]
    assert "family 'glai' trains its seeds in turn" in capsys.readouterr().err
