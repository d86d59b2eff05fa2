"""Every experiment config loads and validates; the quick variant of one runs end to end."""
import importlib.util
import json
from pathlib import Path

import pytest

from sal_jax.train import apply_quick, train_and_evaluate

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = sorted((ROOT / "experiments" / "configs").glob("*.py"))


def load_config(path):
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config()


@pytest.mark.parametrize("path", CONFIGS, ids=[p.stem for p in CONFIGS])
def test_config_docstring_gives_command_and_run_time(path):
    doc = path.read_text().split('"""')[1]
    assert f"--config=experiments/configs/{path.name}" in doc
    assert "Run time on 2 CPU cores" in doc
    config = load_config(path)
    assert len(config.sweep.per_class) == len(config.sweep.epochs)
    if path.stem != "digits_mlp":
        assert config.num_seeds >= 3 and config.ablations and config.quick_overrides


def test_quick_overrides_apply_only_when_asked():
    config = load_config(ROOT / "experiments" / "configs" / "text_gru.py")
    assert apply_quick(config).sweep.per_class == config.sweep.per_class
    config.quick = True
    quick = apply_quick(config)
    assert quick.sweep.per_class == (20,) and quick.model.levels == (1, 2)
    assert config.model.levels == (1, 2, 3)  # the original is not modified


def test_quick_text_experiment_end_to_end(tmp_path, real_text_dir):
    config = load_config(ROOT / "experiments" / "configs" / "text_gru.py")
    config.quick = True
    config.data.data_dir = str(real_text_dir)
    results = train_and_evaluate(config, str(tmp_path), progress=False)
    (cell,) = json.loads((tmp_path / "results.json").read_text())["cells"]
    assert cell["dataset"]["train"] == 120 and len(cell["runs"]) == 2     # 20 per class x 6; 2 seeds
    assert {"hidden_only", "output_only", "plain_epoch_matched", "plain_time_matched"} <= set(cell["runs"][0])
    for row in ("SAL hidden-only, bottom", "SAL output-only, bottom", "plain, time-matched"):
        assert row in results["table"]
