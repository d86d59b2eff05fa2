"""TensorBoard events, read back with TensorBoard's own reader and checked against results.json."""
import importlib.util
import json
import pathlib
import sys

import numpy as np
import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.hparams import plugin_data_pb2

from sal_jax.config import default_config
from sal_jax.summaries import LevelLog, hparam_values
from sal_jax.train import train_and_evaluate

ROOT = pathlib.Path(__file__).resolve().parents[1]


def digits_config():
    """experiments/configs/digits_mlp.py's config, the module loaded by its path: with experiments/configs on
    sys.path, its sparse.py would be importable as a top-level `sparse`."""
    path = ROOT / "experiments" / "configs" / "digits_mlp.py"
    spec = importlib.util.spec_from_file_location("digits_mlp_config", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config()


def read_run(directory: pathlib.Path) -> EventAccumulator:
    events = EventAccumulator(str(directory), size_guidance={"scalars": 0, "tensors": 0})  # 0: keep all
    events.Reload()
    return events


def scalars(events: EventAccumulator, tag: str) -> tuple[list[int], np.ndarray]:
    points = events.Scalars(tag)
    return [p.step for p in points], np.array([p.value for p in points])


def f32(values) -> np.ndarray:
    return np.asarray(values, dtype=np.float32)  # what an event stores


def test_events_match_results_json(tmp_path):
    """The digits main job, tiny (levels 1x16 and 2x16, 2 epochs, calls of 5 steps: 19 steps an epoch
    make calls of 5, 5, 5, 4), checkpoints on: one run per level and baseline, whose scalars are those
    of results.json."""
    config = digits_config()
    config.model.levels, config.model.width = (1, 2), 16
    config.train.epochs, config.num_seeds, config.train.steps_per_call = 2, 1, 5
    config.guidance.gradient_diagnostics = True
    train_and_evaluate(config, str(tmp_path), progress=False)
    (seed,) = json.loads((tmp_path / "results.json").read_text())["cells"][0]["runs"]
    runs = tmp_path / "tensorboard" / "full" / "seed_0" / "sal"
    assert sorted(p.name for p in runs.iterdir()) == ["level1", "level2", "plain_compute_matched",
                                                     "plain_epoch_matched", "plain_time_matched"]
    records = {"level1": seed["sal"][0], "level2": seed["sal"][1], "plain_compute_matched": seed["plain_compute_matched"],
               "plain_epoch_matched": seed["plain_epoch_matched"], "plain_time_matched": seed["plain_time_matched"]}
    for name, record in records.items():
        events, history = read_run(runs / name), record["history"]
        epoch_ends = [19 * (i + 1) for i in range(len(history) - 1)] + [record["steps"]]
        # each evaluation, and each epoch's gradient norms and training time
        steps, accuracy = scalars(events, "test/accuracy")
        assert steps == epoch_ends
        np.testing.assert_array_equal(accuracy, f32([row["test_accuracy"] for row in history]))
        assert accuracy[-1] == f32(record["final_test_accuracy"])
        layers = [k.split("/", 1)[1] for k in history[0] if k.startswith("train_grad_norm/")]
        assert layers and sorted(t for t in events.Tags()["scalars"] if t.startswith("grad_norm/")) == sorted(
            f"grad_norm/{layer}" for layer in layers)
        for layer in layers:
            np.testing.assert_array_equal(scalars(events, f"grad_norm/{layer}")[1],
                                          f32([row[f"train_grad_norm/{layer}"] for row in history]))
        np.testing.assert_array_equal(scalars(events, "time/train_seconds")[1], f32([r["train_time"] for r in history]))
        # each training call: its means, weighted by its steps, add up to the epoch's means
        steps, loss = scalars(events, "train/loss")
        if name != "plain_time_matched":  # its last epoch may stop mid-epoch, at its budget
            assert steps[:4] == [5, 10, 15, 19]
        calls = np.diff([0] + steps)
        for end, row in zip(epoch_ends, history):
            start = end - 19 if end % 19 == 0 else end - end % 19
            in_epoch = (np.array(steps) > start) & (np.array(steps) <= end)
            np.testing.assert_allclose(np.sum(loss[in_epoch] * calls[in_epoch]) / (end - start), row["train_loss"],
                                       rtol=1e-5)
        guided = name == "level2"
        assert ("train/hidden" in events.Tags()["scalars"]) == guided
        if guided:  # the weights in force: constant 1.0 in this config
            for tag in ("train/lambda_hidden", "train/lambda_output"):
                np.testing.assert_array_equal(scalars(events, tag)[1], 1.0)
        diagnostics = sorted(k for k in history[0] if k.startswith("diag_"))
        assert len(diagnostics) == (4 if guided else 0)
        for key in diagnostics:  # each epoch, on one batch
            np.testing.assert_array_equal(scalars(events, f"diagnostics/{key[5:]}")[1], f32([r[key] for r in history]))
        # the config, as text and as hparams with the level's final accuracy
        assert "| train.learning_rate | 0.001 |" in config_text(events).splitlines()
        start_info = plugin_data_pb2.HParamsPluginData.FromString(
            events.PluginTagToContent("hparams")["_hparams_/session_start_info"]).session_start_info
        assert start_info.hparams["train.learning_rate"].number_value == pytest.approx(0.001)
        assert start_info.hparams["model.levels"].string_value == "[1, 2]"
        assert scalars(events, "hparam/final_test_accuracy") == ([record["steps"]], f32([record["final_test_accuracy"]]))


def config_text(events: EventAccumulator) -> str:
    (event,) = events.Tensors("config/text_summary")
    return event.tensor_proto.string_val[0].decode()


def test_the_config_text_is_a_table_of_its_keys_and_values(tmp_path):
    """TensorBoard renders a text summary as markdown: the config is a table of dotted keys and values, not
    ml_collections' YAML (its `!!python/object` tags and `_locked` fields); a "|" in a value is escaped."""
    config = default_config()
    config.train.epochs, config.data.name = 7, "a|b"
    log = LevelLog(str(tmp_path))
    log.finish(9, config, {"level": 1}, {"final_test_accuracy": 0.5})
    log.close()
    lines = config_text(read_run(tmp_path)).splitlines()
    assert lines[:2] == ["| key | value |", "| --- | --- |"]
    assert "| train.epochs | 7 |" in lines and "| model.levels | [1, 2, 4, 8] |" in lines
    assert "| data.name | a\\|b |" in lines
    assert len(lines) == 2 + len(hparam_values(config))
    assert not any(word in "\n".join(lines) for word in ("!!python", "_locked", "_fields"))


def test_a_resumed_level_hides_what_the_interrupted_run_wrote_after_its_checkpoint(tmp_path):
    """Steps 1..10 written, then a resume after step 5 (its checkpoint): TensorBoard shows 1..5 from the
    first writer and 6..8 from the second, each step once."""
    first = LevelLog(str(tmp_path), purge_step=1)
    for step in range(1, 11):
        first.train(step, {"loss": 1.0})
    first.close()
    resumed = LevelLog(str(tmp_path), purge_step=6)
    for step in range(6, 9):
        resumed.train(step, {"loss": 2.0})
    resumed.close()
    steps, loss = scalars(read_run(tmp_path), "train/loss")
    assert steps == list(range(1, 9))
    np.testing.assert_array_equal(loss, [1.0] * 5 + [2.0] * 3)


def test_hparam_values_are_the_configs_leaves_as_tensorboard_takes_them():
    import ml_collections

    config = ml_collections.ConfigDict({"train": {"learning_rate": 0.1, "optimizer": "adam", "rounds": 2},
                                        "quick": False, "model": {"levels": (1, 2)}, "quick_overrides": ()})
    assert hparam_values(config) == {"train.learning_rate": 0.1, "train.optimizer": "adam", "train.rounds": 2,
                                   "quick": False, "model.levels": "[1, 2]", "quick_overrides": "[]"}


def test_logging_does_not_import_pytorch_where_it_is_installed(tmp_path):
    """tensorboardX imports torch when it can (seconds of start-up on a GPU machine with PyTorch): loading
    the summaries must not, and `import torch` must still work afterwards. A stand-in torch package
    records whether it was imported."""
    import subprocess

    fake = tmp_path / "torch"
    fake.mkdir()
    (fake / "__init__.py").write_text("import sys\nsys.stderr.write('torch imported\\n')\nclass Tensor: pass\n")
    repo = pathlib.Path(__file__).resolve().parents[1]
    code = ("import sys, sal_jax.summaries; print('torch' in sys.modules); import torch; "
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={"PYTHONPATH": f"{tmp_path}:{repo}", "PATH": "/usr/bin:/bin", "JAX_PLATFORMS": "cpu"})
    assert out.stdout.split() == ["False", "True"]
    assert out.stderr.count("torch imported") == 1  # by the program's own import only
