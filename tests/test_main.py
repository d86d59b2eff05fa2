"""The command line reports a bad command line as one line (`error: ...`), exit 1, before any training."""
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CONFIG = "experiments/configs/digits_mlp.py"


def cli_error(*args: str) -> str:
    """Runs `python -m sal_jax.main args`; it must fail with one line on stderr and print nothing else."""
    proc = subprocess.run([sys.executable, "-m", "sal_jax.main", "--noprogress", "--compilation_cache=", *args],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr and proc.stdout == ""
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr[-2000:]
    assert lines[0].startswith("error: ")
    return lines[0]


@pytest.mark.parametrize("overrides", [[], ["--config.train.epochs=3"]])
def test_a_missing_config_file(overrides):
    assert cli_error("--config=nope.py", *overrides) == "error: --config: no config file at 'nope.py'"


def test_a_config_that_is_a_directory():
    assert cli_error("--config=experiments") == "error: --config: 'experiments' is not a file"


@pytest.mark.parametrize("override, message", [
    ("--config.train.epoch=3", "--config.train.epoch: config.train has no key 'epoch'; did you mean 'epochs'?"),
    ("--config.trian.epochs=3", "--config.trian.epochs: config has no key 'trian'; did you mean 'train'?"),
    ("--config.train.foo=1", "--config.train.foo: config.train has no key 'foo'; its keys are batch_size, "
                             "epochs, eval_every, learning_rate, optimizer, rounds, steps_per_call"),
    ("--noconfig.data.augmnt", "--config.data.augmnt: config.data has no key 'augmnt'; did you mean 'augment'?"),
])
def test_a_misspelled_key_names_the_keys_nearby(override, message):
    assert cli_error(f"--config={CONFIG}", override) == f"error: {message}"


def test_a_bad_value_is_one_line():
    assert cli_error(f"--config={CONFIG}", "--config.train.epochs=abc") == (
        "error: flag --config.train.epochs=abc: invalid literal for int() with base 10: 'abc'")


def test_a_workdir_that_is_a_file_or_under_one(tmp_path):
    afile = tmp_path / "notes.txt"
    afile.write_text("")
    assert cli_error(f"--config={CONFIG}", f"--workdir={afile}") == (
        f"error: workdir: '{afile}' exists and is not a directory")
    assert cli_error(f"--config={CONFIG}", f"--workdir={afile}/run") == (
        f"error: workdir: cannot create '{afile}/run': Not a directory")


def test_a_diverging_run_stops_with_one_line_and_keeps_its_checkpoints(tmp_path):
    """SGD at learning rate 1e6 on a ReLU ladder: the top level ends flagged (a warning: finite, far
    above uniform guessing's loss), and a phase of level 2 goes non-finite. The run stops with one error
    line naming the phase, step and term, and where the checkpoints from before it are; no results."""
    proc = subprocess.run([sys.executable, "-m", "sal_jax.main", "--noprogress", "--compilation_cache=",
                           f"--config={CONFIG}", f"--workdir={tmp_path}", "--config.train.optimizer=sgd",
                           "--config.train.learning_rate=1e6", "--config.model.levels=(1, 2)",
                           "--config.model.activation=relu", "--config.train.epochs=2", "--config.num_seeds=1",
                           "--config.checkpoint.every_steps=2"], cwd=ROOT, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr and proc.stdout == ""
    *warnings, error = proc.stderr.strip().splitlines()
    assert warnings[0].startswith("warning: SAL r1 L1 diverged: its last epoch's training cross-entropy is ")
    assert all(re.fullmatch(r"warning: .+ diverged: .+", line) for line in warnings)
    checkpoints = tmp_path / "checkpoints" / "full" / "seed_0" / "sal"
    assert re.fullmatch(rf"error: training diverged: .+ \(level 2, round 1\), training step \d+: the .+ went "
                        rf"non-finite first \(loss=.+\); training stopped there; the checkpoints before it are "
                        rf"kept in {re.escape(str(checkpoints))}", error), error
    assert not (tmp_path / "results.json").exists()


@pytest.mark.parametrize("folder", ["missing", "empty"])
def test_a_misplaced_mnist_is_one_line_without_tfds_warnings(tmp_path, folder):
    """TFDS logs a warning ("Variant folder ... has no dataset_info.json") while it looks for the
    dataset: only our error line may appear."""
    data_dir = tmp_path / folder
    if folder == "empty":
        data_dir.mkdir()
    assert cli_error("--config=experiments/configs/mnist_mlp_scarce.py", f"--config.data.data_dir={data_dir}",
                     f"--workdir={tmp_path / 'run'}").startswith(f"error: no prepared TFDS dataset 'mnist' under {data_dir}")
