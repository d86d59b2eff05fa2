"""Records, tables and plots of sal_jax.report, from hand-built records (no training: fast)."""
import json
import math

import jax
import jax.numpy as jnp

import sal_jax
from sal_jax import report
from sal_jax.records import LevelRun
from sal_jax.levels import init_level
from sal_jax.models.mlp import MLP


def run(level: int, acc: float, name: str = "sal", diverged: bool | None = None, params: int = 26) -> dict:
    """A results.json record of one run, as report.run_record writes it (three evaluated epochs)."""
    history = [{"epoch": e, "train_time": 0.1 * level * (e + 1), "train_ce": 0.5, "test_accuracy": acc - 0.1 * (2 - e),
                "train_grad_norm/dense_0": 1.0, "train_grad_norm/head": 2.0} for e in range(3)]
    rec = {"name": name, "level": level, "round": 1, "history": history, "train_time": 0.3 * level, "steps": 30,
           "compiles": {"train": 1, "eval": 1}, "compile_time": 1.0, "final_test_accuracy": acc,
           "best_test_accuracy": acc, "num_params": params * level}
    if diverged is not None:  # records written before the field have no "diverged"
        rec["diverged"] = diverged
    return rec


def seed_record(seed: int, diverged_plain: bool = False) -> dict:
    return {"seed": seed, "sal_train_time": 0.9, "sal": [run(1, 0.9), run(2, 0.92)],
            "plain_epoch_matched": run(2, 0.85, "plain", diverged=diverged_plain),
            "plain_time_matched": run(2, 0.95, "plain_time")}


def cell(per_class: int, diverged_plain: bool = False) -> dict:
    return {"per_class": per_class, "epochs": 3, "dataset": {"name": "tiny", "train": 20, "test": 10},
            "runs": [seed_record(0, diverged_plain), seed_record(1)]}


def test_run_record_counts_parameters_by_hand():
    module = MLP(hidden_layers=1, width=4, num_classes=2)
    x = jnp.zeros((5, 3))
    variables = init_level(module, jax.random.key(0), x)
    level = LevelRun(name="sal", level=1, round=1, variables=variables, history=[{"test_accuracy": 0.5}],
                     train_time=0.1, steps=1, compiles={"train": 1, "eval": 1})
    by_hand = 3 * 4 + 4 + 4 * 2 + 2  # Dense(3 -> 4) with bias, head Dense(4 -> 2) with bias
    record = report.run_record(level)
    assert record["num_params"] == by_hand
    assert sal_jax.num_params(module, x) == by_hand  # the exported function, from the module alone
    assert json.loads(json.dumps(record))["num_params"] == by_hand
    logits = sal_jax.predict(module, variables, x)
    assert logits.shape == (5, 2)


def test_table_shows_params_and_marks_a_diverged_method():
    table = report.markdown_table(cell(0, diverged_plain=True)["runs"])
    assert "| method | params |" in table
    assert "| SAL level 1 | 26 |" in table and "| SAL level 2 (bottom) | 52 |" in table
    assert "| plain, epoch-matched (diverged: 1 of 2 seeds) | 52 |" in table
    assert "| plain, time-matched | 52 |" in table  # no "diverged" field (older records): not marked
    assert table.splitlines()[-1] == report.DIVERGED_NOTE
    assert "log of the class count" in report.DIVERGED_NOTE
    clean = report.markdown_table(cell(0)["runs"])
    assert "diverged" not in clean


def test_table_of_old_records_without_param_counts():
    runs = cell(0)["runs"]
    for rec in runs:
        for r in rec["sal"] + [rec["plain_epoch_matched"], rec["plain_time_matched"]]:
            del r["num_params"]
    assert "| SAL level 1 | — |" in report.markdown_table(runs)


def test_summary_marks_divergence():
    summary = report.summary_table([cell(10, diverged_plain=True), cell(0)])
    lines = summary.splitlines()
    assert lines[0] == "| train examples | SAL, bottom level | plain, epoch-matched | plain, time-matched |"
    assert "(diverged: 1 of 2 seeds)" in lines[2] and "diverged" not in lines[3]
    assert lines[-1] == report.DIVERGED_NOTE


def test_a_sweep_over_ladder_shapes_reports_each_cells_bottom_level(tmp_path):
    """Cells of a sweep over model.levels have different bottom levels (here 2 and 3) and may lack a
    baseline: one summary row each, "—" where a method is missing; the whole report is written."""
    deeper = cell(10)
    for rec in deeper["runs"]:
        rec["sal"].append(run(3, 0.97))
        del rec["plain_time_matched"]
    deeper["point"] = {"model.levels": [1, 2, 3]}
    lines = report.summary_table([cell(10), deeper]).splitlines()
    assert lines[0] == "| train examples | SAL, bottom level | plain, epoch-matched | plain, time-matched |"
    assert lines[2] == "| 20 (10/class) | 92.0 ± 0.0 | 85.0 ± 0.0 | 95.0 ± 0.0 |"
    assert lines[3] == "| 20 (10/class), levels=[1, 2, 3] | 97.0 ± 0.0 | 85.0 ± 0.0 | — |"
    assert "levels=[1, 2, 3]" in report.write_report({"cells": [cell(10), deeper]}, str(tmp_path))
    (ax,) = report.level_accuracy_figure([cell(10), deeper]).axes  # no parameter counts: the ladders differ
    assert [t.get_text() for t in ax.get_xticklabels()] == ["1", "2", "3"]


def labels(ax) -> list[str]:
    return ax.get_legend_handles_labels()[1]


def test_level_accuracy_shows_both_baselines_per_training_set_size():
    fig = report.level_accuracy_figure([cell(10), cell(0)])
    (ax,) = fig.axes
    assert labels(ax) == ["SAL, 10/class", "plain, epoch-matched, 10/class", "plain, time-matched, 10/class",
                          "SAL, full", "plain, epoch-matched, full", "plain, time-matched, full"]
    markers = {c.get_label(): c.lines[0].get_marker() for c in ax.containers}
    assert len({markers["SAL, full"], markers["plain, epoch-matched, full"],
                markers["plain, time-matched, full"]}) == 3  # told apart by marker, not only by position
    assert [t.get_text() for t in ax.get_xticklabels()] == ["1\n26 params", "2\n52 params"]


def test_level_accuracy_tells_apart_every_point_of_a_large_sweep():
    """15 sweep points: 15 different (color, line style) pairs for SAL's lines and 15 colors for each baseline's
    markers, where the default cycle of 10 colors gave points 1 and 11 the same."""
    from matplotlib.colors import to_rgba

    cells = [{**cell(10), "point": {"train.learning_rate": 0.001 * (i + 1)}} for i in range(15)]
    (ax,) = report.level_accuracy_figure(cells).axes
    lines = {name: [c.lines[0] for c in ax.containers if c.get_label().startswith(name)]
             for name in ("SAL", "plain, epoch-matched", "plain, time-matched")}  # the records' baselines
    assert len({(to_rgba(line.get_color()), line.get_linestyle()) for line in lines.pop("SAL")}) == 15
    for markers in lines.values():
        assert len({to_rgba(line.get_color()) for line in markers}) == 15


def test_accuracy_vs_time_panels_and_labels():
    fig = report.accuracy_vs_time_figure(cell(0)["runs"], "tiny")
    sal_ax, cmp_ax = fig.axes[:2]
    assert labels(sal_ax) == ["SAL level 1", "SAL level 2"]
    assert labels(cmp_ax) == ["SAL bottom (level 2), after the levels above", "plain, epoch-matched",
                              "plain, time-matched"]
    for ax in (sal_ax, cmp_ax):
        assert "compilation, evaluation, checkpoints and logging excluded" in ax.get_xlabel()
        assert "compilation included" not in ax.get_xlabel()
    # The level boundaries are labelled (on a top axis): level k ends at the mean of the seeds' cumulative times.
    for ax in (sal_ax, cmp_ax):
        (top,) = ax.child_axes
        assert [t.get_text() for t in top.get_xticklabels()] == ["1", "2"]
        assert all(math.isclose(v, w) for v, w in zip(top.get_xticks(), [0.3, 0.9], strict=True))


def test_write_report_writes_what_the_readme_lists(tmp_path):
    results = {"cells": [cell(10), cell(0)]}
    text = report.write_report(results, str(tmp_path))
    written = sorted(p.name for p in tmp_path.iterdir())
    assert written == ["accuracy_vs_time_full.png", "accuracy_vs_time_pc10.png", "grad_norms_full.png",
                       "grad_norms_pc10.png", "level_accuracy.png", "results.md"]
    for name in written[:-1]:
        assert (tmp_path / name).read_bytes()[:4] == b"\x89PNG"
    assert (tmp_path / "results.md").read_text() == text


def test_accuracy_vs_time_over_two_rounds_labels_each_level_once():
    records = []
    for seed in range(2):
        sal = [{**run(level, 0.9), "round": r} for r in (1, 2) for level in (1, 2)]
        records.append({**seed_record(seed), "sal": sal})
    fig = report.accuracy_vs_time_figure(records)
    sal_ax, cmp_ax = fig.axes[:2]
    assert labels(sal_ax) == ["SAL level 1", "SAL level 2"]
    assert labels(cmp_ax)[0] == "SAL bottom (level 2, round 2), after the levels above"
    assert [t.get_text() for t in sal_ax.child_axes[0].get_xticklabels()] == ["1 (r1)", "2 (r1)", "1 (r2)", "2 (r2)"]


def test_level_table_compares_each_level_with_plain_and_names_the_best_model():
    """Bottom only (no every_level): level 1 has no plain runs; the bottom's time-matched baseline (95%)
    beats SAL's bottom (92%). With plain level-1 runs at 96%, the best model is a plain level 1."""
    runs = cell(0)["runs"]
    lines = report.level_table(runs).splitlines()
    assert lines[0] == "| level | params | SAL | plain, epoch-matched | plain, time-matched |"
    assert lines[2] == "| 1 | 26 | 90.0 ± 0.0 | — | — |"
    assert lines[3] == "| 2 (bottom) | 52 | 92.0 ± 0.0 | 85.0 ± 0.0 | **95.0 ± 0.0** |"
    assert lines[-1] == ("Best model overall (mean last-epoch test accuracy): plain, time-matched, level 2, 95.0%; "
                         "the target (SAL's bottom level, 92.0) is not the best model.")
    for rec in runs:
        rec["plain_levels"] = {"1": {"plain_epoch_matched": run(1, 0.96), "plain_time_matched": run(1, 0.91)}}
    lines = report.level_table(runs).splitlines()
    assert lines[2] == "| 1 | 26 | 90.0 ± 0.0 | **96.0 ± 0.0** | 91.0 ± 0.0 |"
    assert lines[-1].startswith("Best model overall (mean last-epoch test accuracy): plain, epoch-matched, level 1, "
                                "96.0%")
    for rec in runs:
        rec["sal"][1]["final_test_accuracy"] = 0.99
    assert report.level_table(runs).splitlines()[-1].endswith("the target (SAL's bottom level) is the best model.")


def test_one_seed_report_prints_no_nan(tmp_path):
    """One seed has no CI, d_z or p: each prints —, never nan."""
    one_seed = {**cell(0), "runs": [seed_record(0)]}
    assert report.paired_table([one_seed]).splitlines()[2] == (
        "| 20 (full) | plain, epoch-matched | 1 | +7.00 | — | — | — | inconclusive (one seed) |")
    assert "nan" not in report.write_report({"cells": [one_seed]}, str(tmp_path))


def test_a_report_without_baselines_has_no_empty_table_and_counts_one_epoch(tmp_path):
    """Both baselines off: one line instead of an empty paired table; a cell of 1 epoch says "1 epoch"."""
    alone = {**cell(0), "epochs": 1}
    for rec in alone["runs"]:
        del rec["plain_epoch_matched"], rec["plain_time_matched"]
    assert report.paired_table([alone]) == report.NO_BASELINE
    text = report.write_report({"cells": [alone]}, str(tmp_path))
    assert "| cell | SAL bottom minus |" not in text and report.NO_BASELINE in text
    assert "(1 epoch per level)" in text and "1 epochs" not in text
    assert "(3 epochs per level)" in report.write_report({"cells": [cell(0)]}, str(tmp_path))


def test_mean_std_gives_the_sample_sd_over_seeds():
    # 1, 2, 3: sample SD 1.0 (ddof = 1); the population SD would print 0.8
    assert report.mean_std([1.0, 2.0, 3.0]) == "2.0 ± 1.0"
    assert report.mean_std([0.5], scale=100) == "50.0"


def test_the_compute_matched_baseline_is_reported_beside_the_others(tmp_path):
    """Records with the compute-matched baseline and FLOP counts: a row, a column and a marker of its own
    (between the reproducible epoch-matched and the wall-clock time-matched), and the FLOPs in the table."""
    with_compute = cell(0)
    for rec in with_compute["runs"]:
        rec["sal_flops"] = 3_000_000
        for r in rec["sal"]:
            r["flops"] = 1_500_000
        rec["plain_compute_matched"] = {**run(2, 0.9, "plain_compute"), "flops": 2_990_000, "step_budget": 299,
                                        "flop_budget": 3_000_000}
    table = report.markdown_table(with_compute["runs"])
    assert "FLOPs 3e+06)" in table.splitlines()[0]
    assert "| plain, compute-matched | 52 |" in table and table.count("| 2.99e+06 |") == 1
    assert "| plain, time-matched | 52 |" in table and table.splitlines()[-1].endswith("| — |")  # not counted
    assert report.summary_table([with_compute]).splitlines()[0] == (
        "| train examples | SAL, bottom level | plain, epoch-matched | plain, compute-matched | plain, time-matched |")
    assert report.level_table(with_compute["runs"]).splitlines()[0] == (
        "| level | params | SAL | plain, epoch-matched | plain, compute-matched | plain, time-matched |")
    assert "| plain, compute-matched | 2 |" in report.paired_table([with_compute])
    (ax,) = report.level_accuracy_figure([with_compute]).axes
    assert labels(ax) == ["SAL, full", "plain, epoch-matched, full", "plain, compute-matched, full",
                          "plain, time-matched, full"]
    assert "plain, compute-matched" in labels(report.accuracy_vs_time_figure(with_compute["runs"]).axes[1])
    assert "plain, compute-matched" in report.write_report({"cells": [with_compute]}, str(tmp_path))
