"""The main job end to end (tiny settings) and the command line's handling of bad input."""
import json
import pathlib
import subprocess
import sys

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
    assert cell["dataset"] == {"name": "digits", "train": 1257, "test": 540}
    table = (tmp_path / "results.md").read_text()
    for row in ("| SAL level 1 |", "| SAL level 2 (bottom) |", "| plain, epoch-matched |", "| plain, time-matched |"):
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
