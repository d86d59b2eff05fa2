"""Every experiment config loads and validates; the quick variant of one runs end to end."""
import importlib.util
import json
import os
import re
import sys
import types
from pathlib import Path

import pytest

from sal_jax.train import apply_quick, train_and_evaluate

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = sorted((ROOT / "experiments" / "configs").glob("*.py"))


def config_module(path):
    spec = importlib.util.spec_from_file_location(f"{path.stem}_config", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def load_config(path):
    return config_module(path).get_config()


def quick_run(name: str, run: str, workdir) -> object:
    """experiments/configs/<name>.py:<run> with --config.quick=True, trained into workdir; its module."""
    module = config_module(ROOT / "experiments" / "configs" / f"{name}.py")
    config = module.get_config(run)
    config.quick = True
    train_and_evaluate(config, str(workdir), progress=False)
    load_make_results()  # and experiments/ on sys.path: the result makers
    return module


@pytest.mark.parametrize("path", CONFIGS, ids=[p.stem for p in CONFIGS])
def test_config_docstring_gives_command_and_run_time(path):
    doc = path.read_text().split('"""')[1]
    assert f"--config=experiments/configs/{path.name}" in doc
    assert "Run time on 2 CPU cores" in doc
    config = load_config(path)
    assert len(config.sweep.per_class) == len(config.sweep.epochs)
    if path.stem != "digits_mlp":  # a sensitivity study's ablations are its λ = 0 points
        assert config.num_seeds >= 3 and (config.ablations or config.sweep.points) and config.quick_overrides


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


def load_make_results():
    spec = importlib.util.spec_from_file_location("make_results", ROOT / "experiments" / "make_results.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["make_results"] = module  # its dataclass looks its module up there
    spec.loader.exec_module(module)
    return module


def test_make_results_claims_are_holm_adjusted_per_experiment_table():
    from sal_jax import stats

    make_results = load_make_results()
    results = make_results.read_results(str(ROOT / "experiments" / "results" / "mnist_deep_mlp"))  # .json or .json.gz
    claims = make_results.claims(results)
    assert [(c.baseline, c.cell.split(" (")[0]) for c in claims] == [
        (b, cell) for b in make_results.COMPARED for cell in ("500/class", "5000/class")]
    assert [c.p_holm for c in claims] == pytest.approx(stats.holm([c.summary.p for c in claims]))
    for c in claims:  # the plain deep sigmoid MLP stays at chance (~10%); SAL's bottom model trains
        assert c.summary.n == 8 and c.summary.mean > 40 and c.summary.ci_low > 0
        assert c.verdict == stats.verdict(c.summary, c.p_holm) == "holds"


def test_make_results_writes_summary_first(tmp_path):
    make_results = load_make_results()
    out = tmp_path / "RESULTS.md"
    make_results.main(str(ROOT / "experiments" / "results"), str(out))
    text = out.read_text()
    studies = ("Sensitivity studies", "GLAI against", "Sparse evolutionary MLPs against")  # summaries apart
    sections = [line for line in text.splitlines() if line.startswith("## ") and not any(s in line for s in studies)]
    assert text.startswith("# Results\n\n## Summary\n")
    assert sections[:2] == ["## Summary", "## How the results were produced and judged"]
    assert re.fullmatch(r"## Headline: bottom model, last-epoch test accuracy \(%\), mean ± std \(sample SD\) over (\d+ or )*\d+ "
                        r"seeds \(per experiment: its table\)", sections[2])
    summary = text.split("## Summary")[1].split("## How")[0].split("## Sensitivity studies")[0]
    counts = [int(n) for n, _ in re.findall(r"^- \*\*[^*]+\*\*: (\d+) of (\d+) \(", summary, re.M)]
    totals = set(re.findall(r"^- \*\*[^*]+\*\*: \d+ of (\d+) \(", summary, re.M))
    assert len(counts) == 5 and totals == {str(sum(counts))}  # holds, reversed, no difference, inconclusive, not evidence
    every, distinct = map(int, re.search(r"(\d+) claims .*\*\*(\d+) distinct claims are counted", summary).groups())
    assert distinct == sum(counts) and every - distinct == 2  # 5a's sigmoid cell: the deep sigmoid MLP's runs
    assert "MNIST deep sigmoid MLP (vanishing gradients): vs plain, epoch-matched: 500/class +65.0" in summary
    assert "are the same runs as MNIST deep sigmoid MLP (vanishing gradients), 500/class" in summary
    assert "Under one Holm family over all" in summary and "Larger gains with less data" in summary
    assert "Smaller spread across seeds" in summary
    assert summary.count("\n") < 40  # one screen
    assert "Holm-adjusted across the claims of one table" in text and "No run predates" in text


def _toy_results(compute: bool) -> dict:
    """Two cells of 4 seeds: SAL 80-86, epoch-matched 70-74, time-matched 85-88, compute-matched 75-78 (if run)."""
    def seed(i, size):
        rec = {"seed": i, "sal": [{"name": "SAL r1 L1", "level": 1, "round": 1, "final_test_accuracy": 0.5},
                                  {"name": "SAL r1 L2", "level": 2, "round": 1, "final_test_accuracy": 0.80 + 0.02 * i}],
               "plain_epoch_matched": {"final_test_accuracy": 0.70 + 0.01 * i + 0.001 * size},
               "plain_time_matched": {"final_test_accuracy": 0.85 + 0.01 * i}}
        if compute:
            rec["plain_compute_matched"] = {"final_test_accuracy": 0.75 + 0.01 * i - 0.002 * (i % 2)}
        return rec
    cells = [{"per_class": size, "dataset": {"name": "toy", "train": 10 * size, "test": 100, "majority": 0.1},
              "runs": [seed(i, size) for i in range(4)]} for size in (10, 100)]
    return {"config": {"data": {"name": "toy"}, "model": {"levels": [1, 2]}}, "cells": cells}


def test_make_results_heads_with_the_compute_matched_baseline_where_it_was_run():
    """Results with plain_compute_matched: the claims are SAL vs epoch- and compute-matched; the time-matched
    one (wall clock) is a family of its own, outside the counts, in its own table and column. Results
    without it keep the epoch- and time-matched claims, and the summary says it was not run."""
    mr = load_make_results()
    new, old = _toy_results(compute=True), _toy_results(compute=False)
    assert [c.baseline for c in mr.claims(new)] == ["plain, epoch-matched"] * 2 + ["plain, compute-matched"] * 2
    assert [c.baseline for c in mr.claims(old)] == ["plain, epoch-matched"] * 2 + ["plain, time-matched"] * 2
    wall = mr.wall_clock_claims(new)
    assert [c.baseline for c in wall] == ["plain, time-matched"] * 2 and mr.wall_clock_claims(old) == []
    assert all(c.verdict.startswith("reversed") for c in wall)  # time-matched scores above SAL here
    experiments = [mr.Experiment("a", "A", new, mr.claims(new), wall_clock=wall),
                   mr.Experiment("b", "B", old, mr.claims(old))]
    for e in experiments:
        mr.spread_claims(e)
    mr.mark_same_runs(experiments)
    mr.global_holm(experiments)
    summary = "\n".join(mr.summary_lines(experiments, []))
    assert "8 claims" in summary and "epoch-matched, and compute-matched where it was run, else time-matched" in summary
    assert "not run in B: there the second baseline is the time-matched one (wall clock" in summary
    assert "2 claims, in each experiment's section, not counted here" in summary
    table = mr.headline_table(experiments)
    assert "| plain, compute-matched | plain, time-matched (wall clock) |" in table[2]
    assert table[4].startswith("| A | 10/class (100 ex.) |") and "| reversed" in table[4]
    assert table[6].startswith("| B | 10/class (100 ex.) |") and table[6].count("not run") == 2
    assert "Against plain, time-matched (wall clock)" in "\n".join(mr.wall_clock_lines(experiments[0]))
    only_old = mr.headline_table([experiments[1]])
    assert "| SAL > epoch-matched? | SAL > time-matched? |" in only_old[2]  # as before the compute-matched baseline


def test_a_sensitivity_study_compares_each_setting_with_the_default_by_seed():
    """Per-seed SAL bottom accuracies: default (80, 82, 84, 86), a setting 2 points better on every seed and
    one whose differences are +1, -1, +1, -1 (mean 0): the first is better than the default, the second
    is not; the pairs are by seed, and p is Holm-adjusted across the settings."""
    from sal_jax import stats

    make_results = load_make_results()

    def cell(point, accuracies):
        runs = [{"seed": seed, "sal": [{"name": "SAL r1 L1", "level": 1, "round": 1,
                                        "final_test_accuracy": a / 100, "best_test_accuracy": a / 100}]}
                for seed, a in enumerate(accuracies)]
        return {"per_class": 100, "point": point, "dataset": {"train": 1000}, "runs": runs}

    results = {"config": {"model": {"levels": [1, 2]}},
               "cells": [cell({}, [80, 82, 84, 86]), cell({"guidance.temperature": 8.0}, [82, 84, 86, 88.1]),
                         cell({"guidance.distance": "cosine"}, [81, 81, 85, 85]),
                         cell({"model.levels": [2]}, [80, 82, 84, 86]), cell({"model.levels": [1, 3]}, [80] * 4)]}
    better, same, same_bottom, deeper = make_results.setting_claims(results)
    assert not same_bottom.cell.endswith("‡") and deeper.cell.endswith("‡")  # a ladder ending in another model
    assert better.cell.startswith("100/class, temperature=8") and same.cell.startswith("100/class, distance=cosine")
    assert better.summary.mean == pytest.approx(2.025) and same.summary.mean == pytest.approx(0.0)
    claims = (better, same, same_bottom, deeper)
    assert [c.p_holm for c in claims] == pytest.approx(stats.holm([c.summary.p for c in claims]), nan_ok=True)
    # The same accuracies on every seed: no spread, so no test (p NaN, out of the family), never "holds".
    assert same_bottom.verdict == "no difference: every seed scores the same with both"
    assert same_bottom.summary.p != same_bottom.summary.p
    assert better.verdict == "holds" and same.verdict.startswith("inconclusive")
    table = "\n".join(make_results.setting_table([better, same]))
    assert "**better than the default**" in table and "| 4 | +2.0 |" in table
    results["cells"][1]["runs"] = results["cells"][1]["runs"][::-1]  # seeds out of order: cannot pair
    with pytest.raises(ValueError, match="seeds differ"):
        make_results.setting_claims(results)


def test_quick_glai_experiment_end_to_end(tmp_path):
    """glai.py:digits, quick: both points train; pruning reads every plain GLAI level back from its
    checkpoint and, unpruned, measures the test accuracy training recorded; the section judges each claim."""
    quick_run("glai", "digits", tmp_path)
    import glai_pruning
    import glai_results

    glai_pruning.main(str(tmp_path), "0.5")
    pruning = json.loads((tmp_path / "pruning.json").read_text())
    results = json.loads((tmp_path / "results.json").read_text())
    (size, glai_cell, mlp_cell), = glai_results.paired_cells(results)
    recorded = [run["plain_epoch_matched"]["final_test_accuracy"] for run in glai_cell["runs"]]
    assert pruning["cells"][size]["accuracy"]["none"] == pytest.approx(recorded, abs=1e-6)
    assert set(pruning["cells"][size]["accuracy"]) == {"none", "units 0.5", "weights 0.5"}
    text = "\n".join(glai_results.section(str(tmp_path)))
    for claim in ("GLAI beats the MLP of equal params (plain, same epochs)", "SAL over GLAI levels beats plain GLAI",
                  "training time for the same epochs", "keeping 50% of the hidden units", "| plain (epoch-matched) |"):
        assert claim in text
    assert (tmp_path / "glai_pc10.png").exists()


def test_quick_sparse_experiment_end_to_end(tmp_path):
    """sparse.py:wine, quick: all six points train; every claim is judged and every point tabulated, the
    sparse points with their live parameters and alive units."""
    quick_run("sparse", "wine", tmp_path)
    import sparse_results

    text = "\n".join(sparse_results.section(str(tmp_path)))
    for claim, *_ in sparse_results.CLAIMS:  # the claim, its training set, the majority class (wine: 38.9%), seeds
        assert f"| {claim} | full (124 ex.) | 38.9 | 2 |" in text
    results = json.loads((tmp_path / "results.json").read_text())
    (_, cells), = sparse_results.point_cells(results)
    assert tuple(cells) == ("dense", "dense_matched", "fixed", "set", "npset", "npset_fixed")
    npset = cells["npset"]["runs"][0]["plain_epoch_matched"]
    assert npset["history"][-1]["alive_units"] == 32  # half of 2 x 32 hidden units
    assert npset["num_params"] < cells["set"]["runs"][0]["plain_epoch_matched"]["num_params"]
    assert (tmp_path / "curves_pc0.png").exists()


def test_the_sparse_config_is_not_the_top_level_module_sparse(monkeypatch):
    """sparse_results reads the point names from experiments/configs/sparse.py loaded by its path: imported by
    its bare name (configs/ on sys.path), it would be whatever `sparse` the process had imported first (here a
    stand-in for pydata's sparse package), or would itself stand in for that package."""
    stand_in = types.ModuleType("sparse")
    monkeypatch.setitem(sys.modules, "sparse", stand_in)
    configs = str(ROOT / "experiments" / "configs")
    on_path = [os.path.normpath(p) for p in sys.path].count(configs)  # (some test modules put it there)
    load_make_results()  # and experiments/ on sys.path
    assert [os.path.normpath(p) for p in sys.path].count(configs) == on_path
    import sparse_results

    config = config_module(ROOT / "experiments" / "configs" / "sparse.py")
    for run, names in (("wine", config.POINT_NAMES), ("density_wine", config.DENSITY_POINT_NAMES)):
        points = json.loads(json.dumps(config.get_config(run).sweep.points))  # as results.json has them
        assert sparse_results.point_names({"config": {"sweep": {"points": points}}}) == names
    assert sys.modules["sparse"] is stand_in


def test_quick_sparse_density_ladder_end_to_end(tmp_path):
    """sparse.py:density_wine, quick: SAL over three NPSET levels of one depth growing in density (ε 2, 5, 20),
    against the dense and the depth ladders; its claims are judged and its levels tabulated by density."""
    quick_run("sparse", "density_wine", tmp_path)
    import sparse_results

    results = json.loads((tmp_path / "results.json").read_text())
    (_, cells), = sparse_results.point_cells(results)
    assert tuple(cells) == ("dense", "npset", "npset_density")
    density = cells["npset_density"]["runs"][0]
    live = [record["num_params"] for record in density["sal"]]
    assert len(live) == 3 and live[0] < live[1] < live[2]  # each level denser than the one above
    assert set(density["plain_levels"]) == {"1", "2"}  # every level also trained plain
    text = "\n".join(sparse_results.section(str(tmp_path)))
    for claim, *_ in sparse_results.DENSITY_CLAIMS:
        assert f"| {claim} | full (124 ex.) | 38.9 | 2 |" in text
    assert "| full (124 ex.) | 1 | 2 |" in text and "| full (124 ex.) | 3 | 20 |" in text
