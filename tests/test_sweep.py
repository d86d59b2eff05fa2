"""Sweeps over config keys: their points, their errors, and a swept main job's paired table."""
import json
import pathlib
import sys

import pytest

from sal_jax.config import default_config
from sal_jax.errors import ConfigError
from sal_jax.sweep import apply_point, point_label, point_tag, sweep_points
from sal_jax.train import train_and_evaluate

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "experiments" / "configs"))
import digits_mlp  # noqa: E402


def test_a_grid_is_every_combination_then_the_listed_points():
    config = default_config()
    assert sweep_points(config) == [{}]
    config.sweep.grid = (("guidance.hidden_weight", (0.1, 1.0)), ("guidance.temperature", (1.0, 2.0, 4.0)))
    config.sweep.points = ((("guidance.distance", "cosine"), ("model.levels", (1, 2))),)
    points = sweep_points(config)
    assert len(points) == 2 * 3 + 1
    assert points[0] == {"guidance.hidden_weight": 0.1, "guidance.temperature": 1.0}
    assert points[5] == {"guidance.hidden_weight": 1.0, "guidance.temperature": 4.0}
    assert points[6] == {"guidance.distance": "cosine", "model.levels": (1, 2)}
    swept = apply_point(config, points[6])
    assert swept.guidance.distance == "cosine" and tuple(swept.model.levels) == (1, 2)
    assert config.guidance.distance == "mse"  # a copy
    assert point_label(points[1]) == "hidden_weight=0.1, temperature=2.0"
    assert point_tag(points[6]) == "distancecosine_levels12"


@pytest.mark.parametrize("grid, points, message", [
    ((("guidance.hiden_weight", (1.0,)),), (),
     "config.sweep: 'guidance.hiden_weight': config.guidance has no key 'hiden_weight'; did you mean 'hidden_weight'?"),
    ((("guidance", (1.0,)),), (), "config.sweep: 'guidance' is a section, not a value"),
    ((("sweep.per_class", ((10,),)),), (), "config.sweep: 'sweep.per_class' cannot be swept (seeds and sizes are every "
                                           "point's)"),
    ((("guidance.hidden_weight", 1.0),), (),
     "config.sweep.grid: 'guidance.hidden_weight' needs a non-empty sequence of values, got 1.0"),
    (("guidance.hidden_weight",), (), "config.sweep.grid: needs ((\"dotted.key\", value), ...), got "
                                      "('guidance.hidden_weight',)"),
    ((), (("guidance.hidden_weight", 1.0),), "config.sweep.points[0]: needs ((\"dotted.key\", value), ...), got "
                                             "('guidance.hidden_weight', 1.0)"),
])
def test_a_bad_sweep_is_one_line(grid, points, message):
    config = default_config()
    config.sweep.grid, config.sweep.points = grid, points
    with pytest.raises(ConfigError) as error:
        sweep_points(config)
    assert str(error.value) == message


def test_a_swept_main_job_pairs_every_point_per_seed(tmp_path):
    """Two points of the digits main job (tiny), 3 seeds: the default guidance, and both weights 0. At
    the second, SAL's bottom level trains exactly as its plain epoch-matched baseline (same init, same
    batches, no guidance), so their paired differences are 0 in every seed, and the table says so."""
    config = digits_mlp.get_config()
    config.model.levels, config.model.width = (1, 2), 16
    config.train.epochs, config.num_seeds = 1, 3
    config.checkpoint.enabled, config.tensorboard = False, False
    config.sweep.points = ((), (("guidance.hidden_weight", 0.0), ("guidance.output_weight", 0.0)))
    train_and_evaluate(config, str(tmp_path), progress=False)
    cells = json.loads((tmp_path / "results.json").read_text())["cells"]
    assert [cell["point"] for cell in cells] == [{}, {"guidance.hidden_weight": 0.0, "guidance.output_weight": 0.0}]
    for seed in cells[1]["runs"]:
        assert seed["sal"][-1]["final_test_accuracy"] == seed["plain_epoch_matched"]["final_test_accuracy"]
    table = (tmp_path / "results.md").read_text()
    (row,) = [line for line in table.splitlines()
              if line.startswith("| 1,257 (full), hidden_weight=0.0, output_weight=0.0 | plain, epoch-matched |")]
    # identical in every seed: no spread, so no t-test (p is "—", never 0) and no difference
    assert row.startswith("| 1,257 (full), hidden_weight=0.0, output_weight=0.0 | plain, epoch-matched | 3 | +0.00 | ")
    assert row.endswith("| no difference: every seed scores the same with both |") and "| 0 |" not in row
    assert "| 1,257 (full) | plain, time-matched | 3 |" in table
    assert (tmp_path / "accuracy_vs_time_full_hidden_weight0.0_output_weight0.0.png").exists()
