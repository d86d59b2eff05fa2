"""The command line reports a bad command line as one line (`error: ...`), exit 1, before any training."""
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CONFIG = "experiments/configs/digits_mlp.py"


def cli_error(*args: str, env: dict[str, str] | None = None) -> str:
    """Runs `python -m sal_jax.main args`; it must fail with one line on stderr and print nothing else."""
    proc = subprocess.run([sys.executable, "-m", "sal_jax.main", "--noprogress", "--compilation_cache=", *args],
                          cwd=ROOT, capture_output=True, text=True, timeout=120, env=env)
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
                             "ensemble, epochs, eval_every, learning_rate, optimizer, rounds, steps_per_call, "
                             "weight_decay"),
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


@pytest.mark.parametrize("override, message", [
    ("--config.train.epochs=0", "config.train.epochs: must be a positive integer, got 0"),
    ("--config.num_seeds=-1", "config.num_seeds: must be a positive integer, got -1"),
    ("--config.train.learning_rate=0.0", "config.train.learning_rate: must be a positive number, got 0.0"),
    ("--config.sweep.epochs=(5, 0)", "config.sweep.epochs: needs one entry per config.sweep.per_class entry, "
                                     "got 2 for 0"),
])
def test_a_bad_config_value_is_reported_before_the_heavy_imports(tmp_path, override, message):
    """JAX, Flax and TFDS take seconds to import: a bad value is reported before them (here they cannot
    be imported at all), and leaves no workdir behind."""
    for package in ("jax", "flax", "tensorflow_datasets"):
        (tmp_path / package).mkdir()
        (tmp_path / package / "__init__.py").write_text(f"raise ImportError('{package} imported')")
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    assert cli_error(f"--config={CONFIG}", override, f"--workdir={tmp_path / 'run'}", env=env) == f"error: {message}"
    assert not (tmp_path / "run").exists()


def test_a_run_refused_before_training_leaves_no_empty_workdir(tmp_path):
    """Refused after the data is loaded (a batch larger than the training set): the folders the run
    made are gone; a workdir that existed before stays, empty or not."""
    too_big = "--config.train.batch_size=5000"
    cli_error(f"--config={CONFIG}", too_big, f"--workdir={tmp_path / 'new' / 'run'}")
    assert not (tmp_path / "new").exists()
    (tmp_path / "empty").mkdir()
    cli_error(f"--config={CONFIG}", too_big, f"--workdir={tmp_path / 'empty'}")
    assert (tmp_path / "empty").is_dir()


@pytest.mark.parametrize("flag", ["--help", "-h"])
def test_help_lists_the_flags_and_how_to_override_the_config(flag):
    proc = subprocess.run([sys.executable, "-m", "sal_jax.main", flag], cwd=ROOT, capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0 and proc.stderr == ""
    for text in ("--config=", "--config.train.epochs=50", "--workdir=", "--[no]progress", "--compilation_cache="):
        assert text in proc.stdout
    assert len(proc.stdout.splitlines()) <= 25


def test_ctrl_c_before_training_prints_one_line_and_exits_130(tmp_path):
    """SIGINT while the modules load (a KeyboardInterrupt there printed a 30-line traceback, or was
    swallowed by a garbage-collection callback and the run went on) and while the data loads."""
    for delay in (0.3, 0.6, 1.0, 1.5):
        workdir = tmp_path / f"run_{delay}"
        proc = subprocess.Popen([sys.executable, "-m", "sal_jax.main", "--noprogress", "--compilation_cache=",
                                 f"--config={CONFIG}", f"--workdir={workdir}"], cwd=ROOT, text=True,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        time.sleep(delay)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 130, (delay, err[-3000:])
        (line,) = err.strip().splitlines()
        # a slow start can still reach training, where the checkpointer stops the run after saving
        assert line.startswith(("interrupted (SIGINT)", "preempted (SIGINT)")) and out == ""
        if line.startswith("interrupted"):
            assert not workdir.exists()


def test_the_failed_members_of_a_run_are_named_once_each():
    """The command line's last line and exit code name each member that went non-finite: its level's
    failure, not the "frozen" of its later levels (sal_jax.member_loop)."""
    from sal_jax.main import failed_members

    line = "SAL r1 L2, seed 1 (level 2, round 1), training step 5: the ce term went non-finite first"
    record = {"seed": 1, "sal": [{"name": "SAL r1 L1"}, {"failure": line}, {"failure": "frozen: it failed in an "
                                                                                     "earlier phase"}],
              "plain_epoch_matched": {"name": "plain"}, "hidden_only": {"sal": [{"failure": "hidden: x"}]}}
    results = {"cells": [{"runs": [{"seed": 0, "sal": [{}]}, record]}]}
    assert failed_members(results) == [line, "hidden: x"]
    assert failed_members({"cells": [{"runs": [{"seed": 0, "sal": [{}]}]}]}) == []
