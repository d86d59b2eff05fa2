"""The rules make_results applies to the headline claims, on small synthetic results (no /work/shared
needed, except the one test that reads the real CARER test labels): runs reported twice counted once,
one Holm family over all claims beside each experiment's, sample SDs (ddof = 1), the majority-class rate
and the cells below it, and the tests of "larger gains with less data" and "smaller spread"."""
import importlib.util
import os
import re
import sys

import numpy as np
import pytest
import scipy.stats

from sal_jax import stats

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def load_make_results():
    """experiments/make_results.py as a module (and experiments/ on sys.path: claims, glai_results)."""
    spec = importlib.util.spec_from_file_location("make_results", os.path.join(ROOT, "experiments", "make_results.py"))
    module = importlib.util.module_from_spec(spec)
    sys.modules["make_results"] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def run(seed, sal, epoch, time):
    """One seed's record, accuracies in points: SAL's two levels (the bottom one `sal`) and both baselines."""
    level = lambda lv, a: {"name": f"SAL r1 L{lv}", "level": lv, "round": 1, "final_test_accuracy": a / 100}
    return {"seed": seed, "sal": [level(1, 50.0), level(2, sal)],
            "plain_epoch_matched": {"final_test_accuracy": epoch / 100},
            "plain_time_matched": {"final_test_accuracy": time / 100}}


def cell(per_class, sal, epoch, time, majority=0.1):
    return {"per_class": per_class, "dataset": {"name": "toy", "train": 10 * per_class, "test": 100,
                                                "majority": majority},
            "runs": [run(s, a, b, c) for s, (a, b, c) in enumerate(zip(sal, epoch, time))]}


def results(*cells):
    return {"config": {"data": {"name": "toy"}, "model": {"levels": [1, 2]}}, "cells": list(cells)}


SAL, PLAIN = [80.0, 82.0, 84.0, 86.0], [70.0, 71.0, 74.0, 73.0]


def experiments(make_results, *pairs):
    found = [make_results.Experiment(f"f{i}", name, res, make_results.claims(res)) for i, (name, res) in
             enumerate(pairs)]
    make_results.mark_same_runs(found)
    make_results.global_holm(found)
    make_results.trend_claims(found)
    for e in found:
        make_results.spread_claims(e)
    return found


def test_the_same_runs_are_counted_once():
    """B's second cell has A's seeds and per-seed SAL and epoch-matched accuracies (its time-matched
    baseline re-timed): its claims are marked, left out of the global family and of the summary's counts."""
    mr = load_make_results()
    a = results(cell(10, SAL, PLAIN, PLAIN))
    b = results(cell(20, [60.0, 61, 62, 64], [60.0, 60, 61, 62], [59.0, 60, 60, 61]),
                cell(10, SAL, PLAIN, [71.0, 72, 73, 74]))
    ea, eb = experiments(mr, ("A", a), ("B", b))
    twice = [c for c in eb.claims if c.same_runs_as]
    assert [c.cell for c in twice] == ["10/class (100 ex.)"] * 2 and twice[0].same_runs_as == "A, 10/class"
    assert not any(c.same_runs_as for c in ea.claims)
    assert all(np.isnan(c.p_global) for c in twice)
    summary = "\n".join(mr.summary_lines([ea, eb], []))
    assert "6 claims" in summary and "**4 distinct claims are counted**" in summary
    assert "B, 10/class are the same runs as A, 10/class" in summary
    counts = [int(n) for n in re.findall(r"^- \*\*[^*]+\*\*: (\d+) of 4 ", summary, re.M)]
    assert len(counts) == 5 and sum(counts) == 4
    # Another SAL vector (one seed differs) is not the same runs.
    c = results(cell(10, SAL[:3] + [86.5], PLAIN, PLAIN))
    assert not any(x.same_runs_as for x in experiments(mr, ("A", a), ("C", c))[1].claims)


def test_one_holm_family_over_all_distinct_claims():
    mr = load_make_results()
    a = results(cell(10, SAL, PLAIN, PLAIN), cell(20, [70.0, 72, 71, 73], [70.5, 71, 71.5, 72], PLAIN))
    b = results(cell(30, [90.0, 91, 92, 93], [89.0, 89.5, 91, 91], [88.0, 90, 90, 92]))
    found = experiments(mr, ("A", a), ("B", b))
    every = [c for e in found for c in e.claims]
    raw = [float(scipy.stats.ttest_rel(mr.bottom_accuracies(cl, "SAL"), mr.bottom_accuracies(cl, base)).pvalue)
           for e, res in zip(found, (a, b)) for base in mr.COMPARED for cl in res["cells"]]
    m = len(raw)
    order = np.argsort(raw)
    holm = np.empty(m)
    running = 0.0
    for rank, i in enumerate(order):  # Holm by hand: (m - rank) p, running maximum, capped at 1
        running = max(running, min(1.0, (m - rank) * raw[i]))
        holm[i] = running
    assert [c.p_global for c in every] == pytest.approx(holm.tolist())
    per_experiment = [c.p_holm for c in found[1].claims]
    assert per_experiment == pytest.approx(stats.holm([c.summary.p for c in found[1].claims]))
    for c in every:
        assert c.verdict_global == stats.verdict(c.summary, c.p_global)


def test_headline_uses_the_sample_sd_and_shows_the_majority_class():
    mr = load_make_results()
    (e,) = experiments(mr, ("A", results(cell(10, [80.0, 82, 84], [70.0, 71, 72], [70.0, 72, 74], majority=0.2))))
    (row,) = mr.headline_rows(e)
    # SAL 80, 82, 84: sample SD sqrt((4 + 0 + 4) / 2) = 2.0 (population SD would be 1.6)
    assert "| 20.0 | 82.0 ± 2.0 | 71.0 ± 1.0 | 72.0 ± 2.0 |" in row


def test_cells_below_the_majority_class_are_no_evidence():
    """Majority class 40%: SAL 30-33%, plain 25-28%: a big, significant difference that says nothing
    about learning the task. It reads "uninformative", counts as no evidence, and stays in the Holm family."""
    mr = load_make_results()
    low = cell(10, [30.0, 31, 32, 33], [25.0, 26, 27, 28.5], [25.0, 26, 27, 27.5], majority=0.4)
    fine = cell(20, SAL, PLAIN, PLAIN, majority=0.4)
    (e,) = experiments(mr, ("A", results(low, fine)))
    below = [c for c in e.claims if c.cell.startswith("10/class")]
    assert all(c.verdict == "uninformative (below the majority class, 40.0%)" for c in below)
    assert all(c.context.below_majority and not mr.counts_as_evidence(c) for c in below)
    assert [c.p_holm for c in e.claims] == pytest.approx(stats.holm([c.summary.p for c in e.claims]))
    table = "\n".join(mr.claim_table(e.claims))
    assert "| 40.0 | 4 |" in table and "**uninformative (below the majority class, 40.0%)**" in table
    # One model at or above the majority class: informative.
    (e2,) = experiments(mr, ("A", results(cell(10, [40.0, 41, 42, 43], [25.0, 26, 27, 28.5], PLAIN, majority=0.4))))
    assert not any(c.context.below_majority for c in e2.claims)


def test_majority_rate_from_test_labels_or_unknown(monkeypatch, tmp_path):
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    import claims  # on sys.path through load_make_results

    load_make_results()
    y = load_digits().target
    *_, y_test = train_test_split(y, y, test_size=0.3, random_state=0, stratify=y)
    expected = 100 * np.bincount(y_test).max() / len(y_test)
    claims.majority_rate.cache_clear()
    assert claims.majority_of({"name": "digits", "subset_seed": 0}, {}) == pytest.approx(expected)
    assert claims.majority_of({"name": "digits"}, {"dataset": {"majority": 0.25}}) == 25.0  # the run's own field
    monkeypatch.setattr(claims, "ROOT", str(tmp_path))  # no ../shared here: the data cannot be found
    claims.majority_rate.cache_clear()
    assert claims.majority_of({"name": "trec", "data_dir": "nowhere"}, {}) is None
    assert claims.majority_of({"name": "npz", "path": "missing.npz"}, {}) is None
    assert claims.CellContext(None, (10.0,)).majority_text() == "unknown"
    assert not claims.CellContext(None, (10.0,)).below_majority
    claims.majority_rate.cache_clear()


def test_carer_majority_class_is_34_8_percent():
    import claims

    load_make_results()
    path = os.path.join(ROOT, "..", "shared", "datasets", "emotion", "test.txt")
    if not os.path.isfile(path):
        pytest.skip(f"CARER's test split is not at {path}")
    labels = [line.rstrip("\n").rpartition(";")[2] for line in open(path) if line.strip()]
    expected = 100 * max(labels.count(x) for x in set(labels)) / len(labels)
    assert claims.majority_of({"name": "emotion", "data_dir": ""}, {}) == pytest.approx(expected)
    assert round(expected, 1) == 34.8


def test_gain_slope_on_log_size_and_spread_test():
    """Three sizes (100, 1,000, 10,000 examples): per-seed gains 3, 2, 1 points plus noise: the slope of the
    gains on log10(size) is what scipy's linregress gives over all 12 points; the spread test per cell is
    stats.pitman_morgan of SAL's bottom against plain epoch-matched."""
    mr = load_make_results()
    noise = np.array([0.1, -0.2, 0.15, -0.05])
    cells = [cell(pc, list(70 + g + noise + np.arange(4)), list(70 + np.arange(4) * 1.5), PLAIN)
             for pc, g in ((10, 3.0), (100, 2.0), (1000, 1.0))]
    (e,) = experiments(mr, ("A", results(*cells)))
    x = np.repeat([2.0, 3.0, 4.0], 4)
    plain = "plain, epoch-matched"
    y = np.concatenate([mr.bottom_accuracies(c, "SAL") - mr.bottom_accuracies(c, plain) for c in cells])
    ref = scipy.stats.linregress(x, y)
    epoch = e.trend[0]
    assert epoch.baseline == "plain, epoch-matched" and epoch.sizes == 3 and epoch.slope.n == 12
    assert epoch.slope.slope == pytest.approx(ref.slope) and epoch.slope.p == pytest.approx(ref.pvalue)
    assert epoch.p_holm == pytest.approx(stats.holm([t.slope.p for t in e.trend])[0])
    assert epoch.verdict.startswith("holds") == (epoch.p_holm < 0.05 and ref.slope < 0)
    assert ref.slope < 0 and epoch.verdict.startswith("holds")
    first = e.spread[0]
    direct = stats.pitman_morgan(mr.bottom_accuracies(cells[0], "SAL"), mr.bottom_accuracies(cells[0], plain))
    assert first.test == direct and first.p_holm == pytest.approx(stats.holm([s.test.p for s in e.spread])[0])
    assert "| 10/class (100 ex.) | 4 |" in "\n".join(mr.spread_lines(e))
    # Two sizes: no slope test.
    (two,) = experiments(mr, ("B", results(*cells[:2])))
    assert two.trend == [] and "not tested (2 training-set sizes" in mr.trend_lines(two)[0]


def test_glai_summary_gives_the_sign_of_every_estimate():
    """Eight cells, every estimate negative, none significant alone: the summary line says "0 > 0, 8 < 0"
    and the two-sided sign test's p = 2 / 2^8 = 0.008 beside the verdict counts."""
    load_make_results()
    import claims
    import glai_results

    rows = [("GLAI beats the MLP", f"{pc}/class", stats.paired_summary([-0.5 - pc / 100, 0.4, -1.1]))
            for pc in range(8)]
    line = glai_results.summary_lines([("digits", {"accuracy": claims.judged(rows)})])[0]
    assert line.startswith("- GLAI beats the MLP: inconclusive 8 of 8; estimates 0 > 0, 8 < 0 (sign test p = 0.008)")
