"""Builds experiments/RESULTS.md from the experiments' results.json files, with a verdict per claim.

    python experiments/make_results.py [RESULTS_DIR [OUT]]    (default: experiments/results experiments/RESULTS.md)

Verdicts are computed, not written by hand, with `sal_jax.stats` (its docstring has the formulas). A
headline claim is "SAL's bottom model beats a plain baseline (epoch- or time-matched)" in one cell. SAL and
a baseline of the same seed share initial weights and batch order, so each claim is judged on the per-seed
differences d = SAL - plain in last-epoch test accuracy (points): n, mean, 95% t CI, Cohen's d_z and the
two-sided paired t-test's p, Holm-adjusted across one experiment's claim table (both baselines x every
cell). The verdict: "holds" / "reversed" when the adjusted p < 0.05 (sign of the mean), else "no
difference larger than X points" when the CI lies within +-X <= stats.PRACTICAL_THRESHOLD, else
"inconclusive (CI from a to b)"; "inconclusive (one seed)" with one seed, "inconclusive (no spread: ...)"
when every seed differs by the same amount (no test).

Not evidence either way: a cell where every run of both methods scores the same ("ceiling: every run
scores 100.0%"; no test, so no p and no place in a Holm family), and a cell whose models (SAL's bottom and
both plain baselines, mean accuracy) all score below the test set's majority-class rate ("uninformative
(below the majority class)"; kept in its Holm family, which stays conservative; the rate from the cell's
dataset record's "majority", else from the test labels, claims.majority_of; "unknown" when the data cannot
be read).

The summary counts each run once: a cell whose seeds and per-seed SAL and epoch-matched accuracies equal
an earlier experiment's cell exactly (the same runs, reported twice) is listed as "same runs as ..." and
left out of the counts and of the global family. Beside the per-experiment families, one Holm family over
all distinct headline claims (global): the summary states both and lists the verdicts it changes.

The seed's other two claims, tested:
- "larger gains with less data": per experiment with >= 3 training-set sizes and per baseline, the OLS
  slope of the per-seed gains on log10(training-set size) (stats.slope_test; points per tenfold data),
  Holm-adjusted across every such slope; "holds" when significantly negative.
- "smaller spread across seeds": per cell, SAL's bottom against plain (epoch-matched), the Pitman-Morgan
  test of equal variances for paired samples with its CI on the SD ratio SAL / plain (stats.pitman_morgan;
  the CI inverts the same test, no bootstrap), Holm-adjusted across the experiment's cells; "holds" when
  SAL's SD is significantly smaller, "reversed" when larger.
Every mean ± std in the tables this file writes is the sample SD (ddof = 1). RESULTS.md opens with a
summary of every claim grouped by verdict.
"""
from __future__ import annotations

import dataclasses
import math
import os
import sys
from dataclasses import dataclass
from typing import Any

import numpy as np

sys.path[:0] = [os.path.dirname(__file__), os.path.join(os.path.dirname(__file__), "..")]  # *_results; sal_jax
import glai_results  # noqa: E402
import sparse_results  # noqa: E402
from claims import (Claim, CellContext, _num, _p, counts_as_evidence, judge, judged, majority_of,  # noqa: E402,F401
                    read_results, verdict_label)  # (also used by importers)
from sal_jax import report, stats  # noqa: E402
from sal_jax.sweep import point_label  # noqa: E402

EXPERIMENTS = [  # (results folder, title, command)
    ("mnist_mlp_scarce", "1. MNIST MLP, data-scarce sweep",
     "sal-jax --config=experiments/configs/mnist_mlp_scarce.py --workdir=experiments/results/mnist_mlp_scarce"),
    ("mnist_deep_mlp", "2. MNIST deep sigmoid MLP (vanishing gradients)",
     "sal-jax --config=experiments/configs/mnist_deep_mlp.py --config.data.data_dir=../shared/tensorflow_datasets "
     "--workdir=experiments/results/mnist_deep_mlp"),
    ("cifar10_cnn", "3. CIFAR-10 small CNN ladder",
     "sal-jax --config=experiments/configs/cifar10_cnn.py --config.data.data_dir=../shared/tensorflow_datasets "
     "--workdir=experiments/results/cifar10_cnn"),
    ("trec_gru", "4a. TREC, GRU ladder",
     "sal-jax --config=experiments/configs/text_gru.py --config.data.data_dir=../shared/datasets "
     "--workdir=experiments/results/trec_gru"),
    ("emotion_gru", "4b. CARER emotion, GRU ladder",
     "sal-jax --config=experiments/configs/emotion_gru.py --config.data.data_dir=../shared/datasets "
     "--workdir=experiments/results/emotion_gru"),
    ("deep_activations_16", "5a. MNIST 16-layer MLPs without normalisation: sigmoid / tanh / ReLU",
     "sal-jax --config=experiments/configs/deep_activations.py --config.data.data_dir=../shared/tensorflow_datasets "
     "--config.sweep.grid=\"(('model.activation', ('sigmoid', 'tanh', 'relu')), ('model.levels', ((2, 4, 8, 16),)))\" "
     "--workdir=experiments/results/deep_activations_16"),
    ("deep_activations_32", "5b. MNIST 32-layer MLPs without normalisation: sigmoid / tanh / ReLU",
     "sal-jax --config=experiments/configs/deep_activations.py --config.data.data_dir=../shared/tensorflow_datasets "
     "--config.sweep.grid=\"(('model.activation', ('sigmoid', 'tanh', 'relu')), "
     "('model.levels', ((4, 8, 16, 32),)))\" --workdir=experiments/results/deep_activations_32"),
    ("sensitivity_mnist_scarce", "6a. Sensitivity: MNIST MLP at 100/class, one setting at a time",
     "sal-jax --config=experiments/configs/sensitivity.py:mnist_scarce --config.data.data_dir=../shared/tensorflow_datasets "
     "--workdir=experiments/results/sensitivity_mnist_scarce"),
    ("sensitivity_deep_tanh", "6b. Sensitivity: MNIST 16-layer tanh MLP at 500/class, one setting at a time",
     "sal-jax --config=experiments/configs/sensitivity.py:deep_tanh --config.data.data_dir=../shared/tensorflow_datasets "
     "--workdir=experiments/results/sensitivity_deep_tanh"),
    ("transformer_trec", "9a. TREC, Transformer ladder (1, 2, 4 blocks)",
     "sal-jax --config=experiments/configs/transformer.py:trec --config.data.data_dir=../shared/datasets "
     "--workdir=experiments/results/transformer_trec"),
    ("transformer_emotion", "9b. CARER emotion, Transformer ladder (1, 2, 4 blocks)",
     "sal-jax --config=experiments/configs/transformer.py:emotion --config.data.data_dir=../shared/datasets "
     "--workdir=experiments/results/transformer_emotion"),
    ("transformer_deep", "9c. TREC, deep Transformers (3, 6, 12 blocks): post-LN vs pre-LN, no warm-up",
     "sal-jax --config=experiments/configs/transformer.py:deep --config.data.data_dir=../shared/datasets "
     "--workdir=experiments/results/transformer_deep"),
    ("transformer_cifar10", "9d. CIFAR-10, ViT ladder (1, 2, 4 blocks)",
     "sal-jax --config=experiments/configs/transformer.py:cifar10 --config.data.data_dir=../shared/tensorflow_datasets "
     "--workdir=experiments/results/transformer_cifar10"),
]
# Where a run did not run on one of the 2 CPU cores: its device, as the section states it.
DEVICES = {"transformer_trec": "one NVIDIA H200 GPU (jax 0.11.2 CUDA; three runs at a time)",
           "transformer_emotion": "one NVIDIA H200 GPU (jax 0.11.2 CUDA; three runs at a time)"}
GLAI_RUNS = [  # (results folder, title, commands): GLAI against the MLP of equal parameters (issue #14)
    ("glai_digits", "7a. GLAI vs the MLP of equal parameters: digits",
     "sal-jax --config=experiments/configs/glai.py:digits --workdir=experiments/results/glai_digits\n"
     "python experiments/glai_pruning.py experiments/results/glai_digits"),
    ("glai_mnist", "7b. GLAI vs the MLP of equal parameters: MNIST",
     "sal-jax --config=experiments/configs/glai.py:mnist --config.data.data_dir=../shared/tensorflow_datasets "
     "--workdir=experiments/results/glai_mnist\npython experiments/glai_pruning.py experiments/results/glai_mnist"),
    ("glai_cifar10_head", "7c. GLAI vs the MLP of equal parameters: a head on frozen CIFAR-10 CNN features",
     "python experiments/frozen_features.py --data_dir=../shared/tensorflow_datasets "
     "--out=experiments/results/cifar10_features/features.npz\n"
     "sal-jax --config=experiments/configs/glai.py:cifar10_head --workdir=experiments/results/glai_cifar10_head\n"
     "python experiments/glai_pruning.py experiments/results/glai_cifar10_head"),
]
SPARSE_RUNS = [  # (results folder, title, command): SET / NPSET against dense MLPs (issue #15)
    (f"sparse_{run}", f"8{letter}. Sparse evolutionary MLPs (SET / NPSET) vs dense: {title}",
     f"sal-jax --config=experiments/configs/sparse.py:{run}{data_dir} --workdir=experiments/results/sparse_{run}")
    for letter, run, title, data_dir in (
        ("a", "breast_cancer", "breast cancer", ""), ("b", "wine", "wine", ""), ("c", "digits", "digits", ""),
        ("d", "mnist", "MNIST", " --config.data.data_dir=../shared/tensorflow_datasets"))] + [
    (f"sparse_density_{run}", f"8{letter}. SAL over NPSET levels growing in density: {title}",
     f"sal-jax --config=experiments/configs/sparse.py:density_{run}{data_dir} "
     f"--workdir=experiments/results/sparse_density_{run}")
    for letter, run, title, data_dir in (
        ("e", "breast_cancer", "breast cancer", ""), ("f", "wine", "wine", ""), ("g", "digits", "digits", ""),
        ("h", "mnist", "MNIST", " --config.data.data_dir=../shared/tensorflow_datasets"))]
SENSITIVITY = ("sensitivity_",)  # folders whose claims are summarised apart: many settings of one cell


def bottom_accuracies(cell: dict[str, Any], method: str) -> np.ndarray:
    rows = dict(report.method_rows(cell["runs"]))
    name = next(n for n in rows if n.startswith("SAL level") and "bottom" in n) if method == "SAL" else method
    return np.array([r["final_test_accuracy"] for r in rows[name]]) * 100


EPOCH, COMPUTE, TIME = "plain, epoch-matched", "plain, compute-matched", "plain, time-matched"
COMPARED = (EPOCH, TIME)      # the headline baselines of results without the compute-matched baseline
HEADLINE = (EPOCH, COMPUTE)   # ... and of results with it: the time-matched one is then an extra, wall clock
WALL_CLOCK = "wall clock"


def has_compute(results: dict[str, Any]) -> bool:
    """Whether every run of the results has the compute-matched baseline (runs from before it have not)."""
    return all("plain_compute_matched" in rec for cell in results["cells"] for rec in cell["runs"])


def compared(results: dict[str, Any]) -> tuple[str, str]:
    """The two baselines the headline claims use: epoch- and compute-matched (both reproducible) where the
    results have the compute-matched one, else epoch- and time-matched (today's claims of older runs)."""
    return HEADLINE if has_compute(results) else COMPARED


def cell_context(results: dict[str, Any], cell: dict[str, Any]) -> CellContext:
    """The cell's majority-class rate and the mean accuracy of its three models (SAL's bottom, both plain)."""
    means = tuple(float(bottom_accuracies(cell, m).mean()) for m in ("SAL",) + compared(results))
    return CellContext(majority_of(results["config"]["data"], cell), means)


def claims(results: dict[str, Any], baselines: tuple[str, ...] | None = None) -> list[Claim]:
    """One claim per baseline (default: `compared`) and cell (the rows of the experiment's claim table, in
    order), Holm-adjusted together: the table is the family."""
    rows = []
    for baseline in compared(results) if baselines is None else baselines:
        for cell in results["cells"]:
            summary = stats.paired_scores(bottom_accuracies(cell, "SAL"), bottom_accuracies(cell, baseline))
            rows.append((baseline, cell_name(cell), summary, cell_context(results, cell)))
    return judged(rows)


def wall_clock_claims(results: dict[str, Any]) -> list[Claim]:
    """Where the compute-matched baseline heads the claims: SAL against the time-matched one, a family of its
    own, outside the counts (its budget is seconds of a shared machine, which no rerun reproduces)."""
    return claims(results, (TIME,)) if has_compute(results) else []


@dataclass
class Experiment:
    """One headline experiment: its results, claims (after `same_runs` and `global_holm`), and the
    tests of the seed's other claims."""

    folder: str
    name: str
    results: dict[str, Any]
    claims: list[Claim]
    trend: list["TrendClaim"] = dataclasses.field(default_factory=list)
    spread: list["SpreadClaim"] = dataclasses.field(default_factory=list)
    wall_clock: list[Claim] = dataclasses.field(default_factory=list)  # vs time-matched, when not a headline


def runs_key(cell: dict[str, Any]) -> tuple:
    """What makes two cells the same runs: the seeds and the per-seed SAL bottom and epoch-matched plain
    accuracies, exactly (the time-matched baseline is re-timed in every run, so it never matches)."""
    seeds = tuple(r["seed"] for r in cell["runs"])
    return (seeds,) + tuple(tuple(bottom_accuracies(cell, m).tolist()) for m in ("SAL", "plain, epoch-matched"))


def same_runs(experiments: list[Experiment]) -> dict[tuple[str, str], str]:
    """{(experiment, cell name): where the same runs were met first} for every cell reported twice."""
    seen, found = {}, {}
    for e in experiments:
        for cell in e.results["cells"]:
            key, here = runs_key(cell), f"{e.name}, {short_cell_name(cell)}"
            if key in seen:
                found[(e.name, cell_name(cell))] = seen[key]
            else:
                seen[key] = here
    return found


def mark_same_runs(experiments: list[Experiment]) -> None:
    """Marks every claim of a cell reported before (Claim.same_runs_as): counted once in the summary."""
    twice = same_runs(experiments)
    for e in experiments:
        e.claims = [dataclasses.replace(c, same_runs_as=twice.get((e.name, c.cell), "")) for c in e.claims]


def global_holm(experiments: list[Experiment]) -> None:
    """One Holm family over every distinct headline claim (those repeating runs left out, the uninformative
    ones kept, as in the tables' families): p_global, verdict_global."""
    every = [(e, i, c) for e in experiments for i, c in enumerate(e.claims)]
    counted = [not c.same_runs_as for _, _, c in every]
    adjusted = stats.holm([c.summary.p if ok else math.nan for (_, _, c), ok in zip(every, counted)])
    for (e, i, c), ok, p in zip(every, counted, adjusted):
        e.claims[i] = dataclasses.replace(c, p_global=p, verdict_global=judge(c.summary, p, c.context) if ok else "")


@dataclass(frozen=True)
class TrendClaim:
    """"Larger gains with less data" for one experiment and baseline: the slope of the per-seed gains on
    log10(training-set size), points per tenfold data."""

    baseline: str
    sizes: int
    slope: stats.SlopeSummary
    p_holm: float

    @property
    def verdict(self) -> str:
        s = self.slope
        if self.p_holm < stats.ALPHA:
            return "holds (the gain shrinks with more data)" if s.slope < 0 else "reversed (the gain grows with data)"
        return "not shown" + (f" (slope CI from {s.ci_low:+.2f} to {s.ci_high:+.2f})" if np.isfinite(s.ci_low) else "")


def trend_rows(e: Experiment) -> list[tuple[str, int, stats.SlopeSummary]]:
    """(baseline, sizes, slope) per baseline for an experiment with >= 3 training-set sizes whose cells count
    as evidence; [] otherwise."""
    rows = []
    for baseline in compared(e.results):
        x, y, sizes = [], [], set()
        for cell in e.results["cells"]:
            claim = next(c for c in e.claims if c.baseline == baseline and c.cell == cell_name(cell))
            if not counts_as_evidence(claim):
                continue
            gains = bottom_accuracies(cell, "SAL") - bottom_accuracies(cell, baseline)
            x += [math.log10(cell["dataset"]["train"])] * len(gains)
            y += gains.tolist()
            sizes.add(cell["dataset"]["train"])
        if len(sizes) >= 3:
            rows.append((baseline, len(sizes), stats.slope_test(x, y)))
    return rows


def trend_claims(experiments: list[Experiment]) -> None:
    """Every experiment's slopes, Holm-adjusted together (one family: the claim "larger gains with less data")."""
    rows = [(e, row) for e in experiments for row in trend_rows(e)]
    adjusted = stats.holm([row[2].p for _, row in rows])
    for (e, (baseline, sizes, slope)), p in zip(rows, adjusted):
        e.trend.append(TrendClaim(baseline, sizes, slope, p))


@dataclass(frozen=True)
class SpreadClaim:
    """"SAL is more stable across seeds" in one cell: Pitman-Morgan, SAL's bottom against plain (epoch-matched)."""

    cell: str
    test: stats.VarianceRatio
    p_holm: float
    same_runs_as: str = ""
    below_majority: bool = False  # every model below the majority class: no evidence (kept in the family)

    @property
    def verdict(self) -> str:
        t = self.test
        if self.below_majority:
            return "uninformative (below the majority class)"
        if np.isnan(t.p):
            return "not tested (" + ("fewer than 3 seeds" if t.n < 3 else "an SD is 0") + ")"
        if self.p_holm < stats.ALPHA:
            return "holds (SAL less variable)" if t.ratio < 1 else "reversed (SAL more variable)"
        return f"not shown (SD ratio CI from {t.ci_low:.2f} to {t.ci_high:.2f})"


def spread_claims(e: Experiment) -> None:
    """The experiment's cells' variance tests, Holm-adjusted across its cells (the experiment's family)."""
    tests = [stats.pitman_morgan(bottom_accuracies(cell, "SAL"), bottom_accuracies(cell, "plain, epoch-matched"))
             for cell in e.results["cells"]]
    first = {c.cell: c for c in reversed(e.claims)}  # a cell's first claim: its duplicate mark and context
    adjusted = stats.holm([t.p for t in tests])
    e.spread = [SpreadClaim(cell_name(cell), t, p, first[cell_name(cell)].same_runs_as,
                            first[cell_name(cell)].context.below_majority)
                for cell, t, p in zip(e.results["cells"], tests, adjusted)]


def trend_lines(e: Experiment) -> list[str]:
    if not e.trend:
        sizes = len({cell["dataset"]["train"] for cell in e.results["cells"]})
        return [f"- Larger gain with less data: not tested ({sizes} training-set size{'s' * (sizes != 1)}; the "
                "test needs 3 or more)."] if sizes > 1 else []
    lines = ["**Larger gain with less data**: slope of the per-seed gain SAL − plain on log10(training-set size), "
             "least squares over every seed and size (points per tenfold data); p Holm-adjusted across every "
             "experiment's slopes.", "",
             "| baseline | sizes | points (seeds × sizes) | slope (pts / decade) | 95% CI | p (Holm) | verdict |",
             "|" + " --- |" * 7]
    for t in e.trend:
        s = t.slope
        lines.append(f"| {t.baseline} | {t.sizes} | {s.n} | {s.slope:+.2f} | {s.ci_low:+.2f} to {s.ci_high:+.2f} | "
                     f"{_p(t.p_holm)} | **{t.verdict}** |")
    return lines


def spread_lines(e: Experiment) -> list[str]:
    lines = ["**More stable across seeds**: SD over seeds (ddof = 1) of SAL's bottom and plain (epoch-matched), "
             "Pitman–Morgan test of equal variances for paired samples, 95% CI of the SD ratio by inverting the "
             "same test; p Holm-adjusted across this experiment's cells.", "",
             "| training set | seeds | SD SAL | SD plain | SD ratio SAL / plain | 95% CI | p (Holm) | verdict |",
             "|" + " --- |" * 8]
    for c in e.spread:
        t = c.test
        ci = f"{t.ci_low:.2f} to {t.ci_high:.2f}" if np.isfinite(t.ci_low) else "–"
        lines.append(f"| {c.cell} | {t.n} | {t.sd_a:.1f} | {t.sd_b:.1f} | {t.ratio:.2f} | {ci} | {_p(c.p_holm)} | "
                     f"**{c.verdict}** |")
    return lines


def setting_claims(results: dict[str, Any]) -> list[Claim]:
    """A sensitivity study's question: does a setting beat the default? One claim per sweep point: SAL's
    bottom at the point minus SAL's bottom at the default point (`{}`) of the same training-set size,
    paired by seed (same seeds; same initial weights and batches unless the point changes the ladder),
    Holm-adjusted across the study's points."""
    default = {cell["per_class"]: cell for cell in results["cells"] if not cell.get("point")}
    rows = []
    for cell in results["cells"]:
        base = default.get(cell["per_class"])
        if not cell.get("point") or base is None:
            continue
        if [r["seed"] for r in cell["runs"]] != [r["seed"] for r in base["runs"]]:
            raise ValueError(f"{cell_name(cell)}: its seeds differ from the default point's: cannot pair them")
        summary = stats.paired_scores(bottom_accuracies(cell, "SAL"), bottom_accuracies(base, "SAL"))
        other = another_bottom(results, cell)
        rows.append(("SAL at the default", cell_name(cell) + (f" {ANOTHER_BOTTOM}" if other else ""), summary))
    return judged(rows)


ANOTHER_BOTTOM = "‡"
ANOTHER_BOTTOM_NOTE = (f"{ANOTHER_BOTTOM} This ladder ends in another model than the default's (a different depth): the "
                       "difference compares two models, not two ways of guiding one.")


def another_bottom(results: dict[str, Any], cell: dict[str, Any]) -> bool:
    """Whether a sweep point's ladder ends in a different level than the experiment's default ladder."""
    levels = cell.get("point", {}).get("model.levels")
    return levels is not None and list(levels)[-1] != list(results["config"]["model"]["levels"])[-1]


SETTING_VERDICTS = {"holds": "better than the default", "reversed": "worse than the default"}


def setting_table(cl: list[Claim]) -> list[str]:
    lines = ["**Against the default setting**: SAL's bottom model at each setting minus at the default "
             "(per seed), p Holm-adjusted across the settings.", "",
             "| setting | seeds | SAL − SAL at default (pts) | 95% CI | d_z | p (Holm) | verdict |",
             "|" + " --- |" * 7]
    for c in cl:
        s = c.summary
        lines.append(f"| {c.cell} | {s.n} | {_num(s.mean)} | "
                     + ("–" if s.n < 2 else f"{_num(s.ci_low)} to {_num(s.ci_high)}")
                     + f" | {_num(s.d_z, '+.2f')} | {_p(c.p_holm)} | "
                     f"**{SETTING_VERDICTS.get(c.verdict, c.verdict)}{' †' if c.significant_unadjusted_only else ''}** |")
    if any(ANOTHER_BOTTOM in c.cell for c in cl):
        lines += ["", ANOTHER_BOTTOM_NOTE]
    return lines


def sensitivity_summary(found: list[tuple[str, list[Claim], list[Claim]]]) -> list[str]:
    """Per sensitivity study: how SAL fares against plain across its settings, and which settings beat
    or lose to the default."""
    lines = []
    for name, cl, settings in found:
        counts = {}
        for c in cl:
            key = stats.category(c.verdict)
            counts[key] = counts.get(key, 0) + 1
        label = lambda c: c.cell.split(" (")[0] + (f" {ANOTHER_BOTTOM}" if ANOTHER_BOTTOM in c.cell else "")
        better = [label(c) for c in settings if c.verdict == "holds"]
        worse = [label(c) for c in settings if c.verdict == "reversed"]
        baselines = len({c.baseline for c in cl})
        lines.append(f"- {name}: SAL vs plain at {len(cl) // baselines} settings x {baselines} baselines: "
                     + ", ".join(f"{k} {v}" for k, v in counts.items())
                     + f". Against the default setting: better at {'; '.join(better) or 'none'}; "
                     f"worse at {'; '.join(worse) or 'none'}; the other {len(settings) - len(better) - len(worse)} "
                     "settings not significantly different.")
    if any(ANOTHER_BOTTOM in c.cell for *_, settings in found for c in settings):
        lines.append(f"- {ANOTHER_BOTTOM_NOTE}")
    if found and not any(c.verdict == "holds" for *_, settings in found for c in settings):
        lines.append("- No setting is significantly better than the default in any study: the library's defaults "
                     "stay as they are.")
    return lines


def cell_name(cell: dict[str, Any]) -> str:
    return short_cell_name(cell) + f" ({cell['dataset']['train']:,} ex.)"


def short_cell_name(cell: dict[str, Any]) -> str:
    """'500/class' or 'full', then the cell's sweep point if any: '500/class, activation=tanh'."""
    size = f"{cell['per_class']}/class" if cell["per_class"] else "full"
    return ", ".join(filter(None, [size, point_label(cell.get("point", {}))]))




def claim_table(cl: list[Claim], global_column: bool = True) -> list[str]:
    """An experiment's claim table; `global_column` adds the p-value of one Holm family over all claims."""
    extra = " p (Holm, all claims) |" if global_column else ""
    lines = ["| claim: SAL beats | training set | majority class (%) | seeds | SAL − plain (pts) | 95% CI | d_z "
             f"| p (Holm) |{extra} verdict |", "|" + " --- |" * (9 + global_column)]
    for c in cl:
        s = c.summary
        lines.append(f"| {c.baseline} | {c.cell} | {c.context.majority_text()} | {s.n} | {_num(s.mean)} | "
                     + ("–" if s.n < 2 else f"{_num(s.ci_low)} to {_num(s.ci_high)}")
                     + f" | {_num(s.d_z, '+.2f')} | {_p(c.p_holm)} |"
                     + (f" {_p(c.p_global)} |" if global_column else "")
                     + f" **{verdict_label(c)}**" + global_note(c) + " |")
    if any(c.significant_unadjusted_only for c in cl):
        lines += ["", "† The unadjusted 95% CI excludes 0, but the Holm-adjusted p is not below 0.05: not "
                  "significant once the table's other claims are accounted for."]
    return lines


def global_note(c: Claim) -> str:
    """What the claim table adds to a verdict: where the same runs are counted, or the verdict under one
    Holm family over all claims when it differs."""
    if c.same_runs_as:
        return f" (same runs as {c.same_runs_as}: counted there)"
    if changed_globally(c):
        return f"; over all claims: {c.verdict_global}"
    return ""


def changed_globally(c: Claim) -> bool:
    return bool(c.verdict_global) and stats.category(c.verdict_global) != stats.category(c.verdict)


def secondary_lines(e: Experiment) -> list[str]:
    """The tests of the seed's other claims, below the experiment's claim table."""
    trend = trend_lines(e)
    return trend + ([""] if trend else []) + spread_lines(e)


def cell_list(cl: list[Claim]) -> str:
    """'vs plain, epoch-matched: 500/class +65.0 (+55.1 to +74.9); ... — vs plain, time-matched: ...'."""
    by_baseline = []
    for baseline in dict.fromkeys(c.baseline for c in cl):
        parts = [f"{c.cell.split(' (')[0]} {_num(c.summary.mean)} ({_num(c.summary.ci_low)} to "
                 f"{_num(c.summary.ci_high)})" + (" †" if c.significant_unadjusted_only else "")
                 for c in cl if c.baseline == baseline]
        if parts:
            by_baseline.append(f"vs {baseline}: " + "; ".join(parts))
    return " — ".join(by_baseline)


GROUPS = {"holds": "Holds (SAL significantly better)", "reversed": "Reversed (plain significantly better)",
          "no difference": f"No difference larger than {stats.PRACTICAL_THRESHOLD:g} point",
          "inconclusive": f"Inconclusive (not significant, CI wider than ±{stats.PRACTICAL_THRESHOLD:g} point, "
                          "or no spread to test)",
          "not evidence": "Not evidence either way (every model below the test set's majority class, or every run "
                          "scoring the same)"}


def verdict_groups(experiments: list[Experiment], distinct: list[Claim]) -> list[str]:
    """One line per verdict (per-experiment families, and the count under the global family), then one
    line per experiment listing its claims with that verdict."""
    lines = []
    for key, title in GROUPS.items():
        count = sum(stats.category(c.verdict) == key for c in distinct)
        overall = sum(stats.category(c.verdict_global or c.verdict) == key for c in distinct)
        lines.append(f"- **{title}**: {count} of {len(distinct)} (one family over all claims: {overall})"
                     + (":" if count else "."))
        for e in experiments:
            chosen = [c for c in e.claims if not c.same_runs_as and stats.category(c.verdict) == key]
            if chosen:
                lines.append(f"  - {e.name}: {cell_list(chosen)}")
    return lines


def changed_lines(experiments: list[Experiment], distinct: list[Claim]) -> list[str]:
    changed = [(e, c) for e in experiments for c in e.claims if not c.same_runs_as and changed_globally(c)]
    text = "; ".join(f"{e.name}, vs {c.baseline}, {c.cell.split(' (')[0]}: {stats.category(c.verdict)} → "
                     f"{stats.category(c.verdict_global)} (p {_p(c.p_holm)} → {_p(c.p_global)})" for e, c in changed)
    return [f"- **Under one Holm family over all {len(distinct)} distinct claims** (the stricter reading), "
            + (f"{len(changed)} verdict{'s' * (len(changed) != 1)} change: {text}." if changed
               else "no verdict changes.")]


def same_runs_lines(experiments: list[Experiment]) -> list[str]:
    twice = {(e.name, c.cell.split(" (")[0]): c.same_runs_as for e in experiments for c in e.claims if c.same_runs_as}
    return [f"- **Counted once**: {name}, {cell} are the same runs as {first} (seeds and per-seed SAL and "
            "epoch-matched accuracies identical; only the time-matched baseline was re-timed): its claims stay "
            "in its table, not in these counts." for (name, cell), first in twice.items()]


def trend_summary(experiments: list[Experiment]) -> list[str]:
    rows = [f"{e.name}, vs {t.baseline}: {t.slope.slope:+.2f} pts per tenfold data ({t.slope.ci_low:+.2f} to "
            f"{t.slope.ci_high:+.2f}), p (Holm) {_p(t.p_holm)}: {t.verdict.split(' (')[0]}"
            for e in experiments for t in e.trend]
    return ["- **Larger gains with less data** (slope of the per-seed gain on log10(training-set size), experiments "
            "with ≥ 3 sizes; Holm across the slopes): " + ("; ".join(rows) if rows else "no experiment has 3 sizes")
            + "."]


def spread_summary(experiments: list[Experiment]) -> list[str]:
    distinct = [(e, c) for e in experiments for c in e.spread if not c.same_runs_as]
    counts: dict[str, int] = {}
    for _, c in distinct:
        counts[c.verdict.split(" (")[0]] = counts.get(c.verdict.split(" (")[0], 0) + 1
    significant = [f"{e.name} {c.cell.split(' (')[0]} SD {c.test.sd_a:.1f} vs {c.test.sd_b:.1f}: "
                   f"{c.verdict.split(' (')[0]}" for e, c in distinct if c.verdict.startswith(("holds", "reversed"))]
    widest = max(((e, c) for e, c in distinct if np.isfinite(c.test.ratio)), key=lambda ec: ec[1].test.ratio,
                 default=None)
    return ["- **Smaller spread across seeds** (SD of SAL's bottom vs plain epoch-matched per distinct cell, "
            "Pitman–Morgan test, Holm across each experiment's cells): "
            + ", ".join(f"{k} {v}" for k, v in counts.items()) + f" of {len(distinct)}"
            + (f"; significant: {'; '.join(significant)}" if significant else "")
            + (f"; largest SD ratio SAL / plain {widest[1].test.ratio:.1f} ({widest[1].test.sd_a:.1f} vs "
               f"{widest[1].test.sd_b:.1f} points, {widest[0].name} {widest[1].cell.split(' (')[0]})" if widest else "")
            + "."]


def baselines_phrase(experiments: list[Experiment]) -> str:
    """Which plain baselines the counted claims use."""
    with_compute = [has_compute(e.results) for e in experiments]
    if all(with_compute):
        return "epoch- or compute-matched"
    return "epoch-matched, and compute-matched where it was run, else time-matched" if any(with_compute) \
        else "epoch- or time-matched"


def compute_lines(experiments: list[Experiment]) -> list[str]:
    """Where the compute-matched baseline (reproducible: SAL's FLOPs) was not run, and so the time-matched one
    (wall clock) is the second baseline; where it was, the time-matched verdicts kept apart."""
    without = [e.name for e in experiments if not has_compute(e.results)]
    kept_apart = sum(len(e.wall_clock) for e in experiments)
    lines = []
    if without:
        lines.append(f"- **Compute-matched baseline** (SAL's training FLOPs, the same on any machine): not run in "
                     f"{'any experiment' if len(without) == len(experiments) else '; '.join(without)}: there the second "
                     f"baseline is the time-matched one ({WALL_CLOCK}: seconds of a shared machine, not reproducible).")
    if kept_apart:
        lines.append(f"- Against the time-matched baseline ({WALL_CLOCK}) where the compute-matched one was run: "
                     f"{kept_apart} claims, in each experiment's section, not counted here.")
    return lines


def summary_lines(experiments: list[Experiment], missing: list[str]) -> list[str]:
    """The one-screen summary: every distinct claim, grouped by verdict, then by experiment (a line) and
    baseline; the verdicts one family over all claims changes; the seed's other two claims."""
    every = [c for e in experiments for c in e.claims]
    distinct = [c for c in every if not c.same_runs_as]
    evidence = [c for c in distinct if counts_as_evidence(c)]
    seeds = sorted({c.summary.n for c in every})
    lines = ["## Summary", "",
             f"Computed from the claim tables below: {len(every)} claims \"SAL's bottom model beats the plain "
             f"one\" ({baselines_phrase(experiments)}), one per experiment, training-set size and baseline; "
             f"{len(every) - len(distinct)} of them repeat runs counted elsewhere, so **{len(distinct)} distinct "
             f"claims are counted**, of which {len(distinct) - len(evidence)} are no evidence either way (every "
             "model below the test set's majority class, or every run scoring the same). Each is judged on the paired "
             "per-seed differences SAL − plain in last-epoch test accuracy "
             f"({' or '.join(map(str, seeds))} seeds each, per experiment below): mean difference in points and its "
             "95% CI; significance by the p-value Holm-adjusted across the claims of the experiment's table (the "
             f"counts), and across all {len(distinct)} distinct claims at once (\"one family over all claims\" beside "
             "each count).", ""]
    lines += verdict_groups(experiments, distinct) + changed_lines(experiments, distinct) + same_runs_lines(experiments)
    lines += trend_summary(experiments) + spread_summary(experiments)
    if any(c.significant_unadjusted_only for c in distinct):
        lines.append("- † unadjusted 95% CI excludes 0, not significant after Holm's correction.")
    lines += compute_lines(experiments)
    if missing:
        lines.append("- Not run yet: " + "; ".join(missing) + ".")
    lines += ["", "Format: training set, mean SAL − plain in accuracy points (95% CI). Each experiment's section "
              "has its tables (with the majority-class rate of each cell); which code made each run, in the next.",
              ""]
    return lines


def total_train_time(results: dict[str, Any]) -> float:
    """Seconds of training in every run of an experiment (robust to runs assembled from checkpoints)."""
    total = 0.0
    for cell in results["cells"]:
        for rec in cell["runs"]:
            total += rec["sal_train_time"] + sum(rec[k]["train_time"] for k in report.BASELINES if k in rec)
            total += sum(rec[k]["sal_train_time"] for k in report.ABLATION_LABELS if k in rec)
    return total


def headline_rows(e: Experiment, with_compute: bool = False) -> list[str]:
    """One row per cell: the majority-class rate, each model's mean ± sample SD (ddof = 1), the verdicts.
    `with_compute`: the table has the compute-matched columns (some experiment ran it): SAL, epoch-, compute-
    and time-matched (wall clock), "not run" where this experiment has no compute-matched baseline."""
    rows = []
    for cell in e.results["cells"]:
        methods = ("SAL", EPOCH, COMPUTE, TIME) if with_compute else ("SAL",) + COMPARED
        acc = [report_mean_std(bottom_accuracies(cell, m)) if m != COMPUTE or has_compute(e.results) else "not run"
               for m in methods]
        verdict = {c.baseline: verdict_label(c) for c in e.claims + e.wall_clock if c.cell == cell_name(cell)}
        verdicts = [verdict.get(b, "not run") for b in ((EPOCH, COMPUTE, TIME) if with_compute else COMPARED)]
        rows.append(f"| {e.name} | {cell_name(cell)} | {_context(e, cell).majority_text()} | "
                    + " | ".join(acc) + " | " + " | ".join(verdicts) + " |")
    return rows


def _context(e: Experiment, cell: dict[str, Any]) -> CellContext:
    return next(c.context for c in e.claims if c.cell == cell_name(cell))


def headline_table(headline: list[Experiment]) -> list[str]:
    """The headline table over every experiment: today's columns while no experiment has the compute-matched
    baseline; with it, its columns too, and the time-matched baseline's marked wall clock."""
    seeds = sorted({len(cell["runs"]) for e in headline for cell in e.results["cells"]})
    with_compute = any(has_compute(e.results) for e in headline)
    header = (f"| experiment | training set | majority class (%) | SAL | {EPOCH} | {COMPUTE} | {TIME} ({WALL_CLOCK}) "
              f"| SAL > epoch-matched? | SAL > compute-matched? | SAL > time-matched ({WALL_CLOCK})? |"
              if with_compute else
              f"| experiment | training set | majority class (%) | SAL | {EPOCH} | {TIME} "
              "| SAL > epoch-matched? | SAL > time-matched? |")
    table = [f"## Headline: bottom model, last-epoch test accuracy (%), mean ± std (sample SD) over "
             f"{' or '.join(map(str, seeds))} seeds (per experiment: its table)", "",
             header, "|" + " --- |" * header.count(" |"), *[row for e in headline for row in headline_rows(e, with_compute)]]
    if with_compute:
        table += ["", f"Time-matched ({WALL_CLOCK}): where the compute-matched baseline was run, the time-matched "
                  "verdict is its own family and not counted; where it was not, the time-matched claims are the "
                  "experiment's second headline baseline, as before."]
    if any(c.significant_unadjusted_only for e in headline for c in e.claims):
        table += ["", "† unadjusted 95% CI excludes 0, not significant after Holm's correction."]
    return table


def report_mean_std(values: np.ndarray) -> str:
    """'mean ± sample SD' (ddof = 1), one decimal."""
    return f"{values.mean():.1f} ± {values.std(ddof=1):.1f}" if len(values) > 1 else f"{values[0]:.1f}"


def method_parts(results_dir: str, runs: list[tuple[str, str, str]], judge, section
                 ) -> tuple[list[str], list[tuple[str, dict[str, list]]]]:
    """The sections of a neighbouring method's runs (GLAI: section 7, sparse levels: section 8) and each
    run's claims: `judge(folder)` -> {kind: claims}, `section(folder, link_prefix)` -> markdown lines."""
    sections, found = [], []
    for folder, title, commands in runs:
        path = os.path.join(results_dir, folder)
        results = read_results(path)
        sections += [f"## {title}", ""]
        if results is None:
            sections += ["Not run yet in this repository.", ""]
            continue
        found.append((title.split(": ")[-1], judge(path)))
        sections += ["```bash", commands, "```", f"Library wall time {results['wall_time'] / 60:.1f} min; training "
                     f"time of all its runs {total_train_time(results) / 60:.1f} min, on one core.", "",
                     *section(path, f"results/{folder}/"), "",
                     f"Every cell's tables (SAL level by level, the baselines): [results/{folder}/results.md]"
                     f"(results/{folder}/results.md).", ""]
    return sections, found


INTRO = ["## How the results were produced and judged", "",
         "Every number below comes from the runs in `experiments/results/<name>/results.json`, produced by",
         "the command shown (see each config's docstring for its run time), on a 2-core CPU machine, float32",
         "(sections 9a and 9b: on one NVIDIA H200, as they say; their time-matched baselines are that machine's).",
         "`last` = test accuracy at the last epoch (the headline), `best` = the best evaluated epoch",
         "(optimistic: chosen on test).", "",
         "Verdicts are computed by `experiments/make_results.py` with `sal_jax/stats.py`; they are not edited.",
         "A claim is \"SAL's bottom model beats a plain baseline\" in one training-set size. SAL and each plain",
         "baseline of a seed share initial weights and batch order, so the claim is judged on the per-seed",
         "differences d = SAL − plain (last-epoch test accuracy, points): their mean, its 95% t confidence",
         "interval, the paired effect size d_z = mean / sd(d), and the two-sided paired t-test's p-value, which is",
         "Holm-adjusted across the claims of one table, i.e. the rows of one experiment's claim table (both",
         "baselines × every training-set size). Verdicts: **holds** (Holm-adjusted p < 0.05, SAL better),",
         "**reversed** (Holm-adjusted p < 0.05, plain better); otherwise **no difference larger than X points**",
         f"when the 95% CI lies within ±X ≤ {stats.PRACTICAL_THRESHOLD:g} point (the practical threshold, about",
         "the seed-to-seed spread of one method here; `sal_jax.stats.PRACTICAL_THRESHOLD` says why), and",
         "**inconclusive (CI from a to b)** when the CI is wider: the runs can neither show nor exclude a",
         "relevant difference. The CIs are per claim (not widened for the Holm correction). With no spread (every",
         "seed differs by the same amount) there is no test: **inconclusive (no spread)**. Not evidence either way:",
         "a cell where every run of both methods scores the same (**ceiling**; no test), and one whose models",
         "(SAL's bottom, both plain baselines; mean accuracy) all score below the test set's majority-class rate,",
         "shown beside every cell (**uninformative (below the majority class)**; it stays in its Holm family). A cell",
         "whose runs are the same runs as an earlier experiment's cell (seeds and per-seed accuracies identical)",
         "is counted once. Beside each table's family, one Holm family over all distinct headline claims",
         "(\"p (Holm, all claims)\"). \"Larger gain with less data\": the least-squares slope of the per-seed",
         "gains on log10(training-set size), with its t CI and p (`sal_jax.stats.slope_test`), for experiments",
         "with 3 or more sizes; \"more stable across seeds\": the Pitman–Morgan test of equal variances for",
         "paired samples, with the CI of the SD ratio from inverting the same test (`sal_jax.stats.pitman_morgan`).",
         "Every mean ± std is the sample SD (ddof = 1) in the tables make_results writes; the per-experiment",
         "tables copied from each run's results.md (written by `sal_jax/report.py` at run time) use the",
         "population SD (ddof = 0) until those files are regenerated.", "",
         "The **compute-matched** baseline (`config.baselines.compute_matched`) trains the plain bottom model",
         "for as many steps as SAL's training FLOPs buy: floor(SAL's FLOPs / one plain step's FLOPs), each step",
         "counted by XLA's cost analysis of the unoptimised program (`sal_jax/compute_budget.py`), so any machine",
         "reproduces it. Where an experiment has it, its headline claims use the epoch- and compute-matched",
         "baselines, and the time-matched one (wall clock) is reported apart, marked so, outside the counts;",
         "runs made before it existed keep the epoch- and time-matched baselines.", "",
         "Which code made which run. **Today's code, 8 seeds, every level also trained plain** (2026-11-27,",
         "`config.baselines.every_level`; started between commits 7bdaf51 and 24b53c7, which train these",
         "levels bit for bit alike, and the 32-layer study (5b) at ba909eb; two runs at a time, one per",
         "core): the MNIST MLP data-scarce sweep, MNIST deep sigmoid, CIFAR-10, TREC, CARER and the 16- and",
         "32-layer studies (5a, 5b). The sensitivity studies (6a, 6b) ran at commit b4a3e52 (2026-11-27; the",
         "same training code) with plain baselines of the bottom level only. Every run's",
         "training time excludes compilation (issue #11), so the time-matched baseline's budget is SAL's",
         "training calls and setup only, and its runs train about 2-4x SAL's bottom-level steps: the",
         "time-matched baseline gets SAL's whole training time for its one model. No run predates",
         "today's training code. The CIFAR-10",
         "copy here is a JPEG re-encoding. CARER uses 80 and 300 examples per class (the full set is too",
         "slow for one CPU core).", ""]



def load(results_dir: str) -> tuple[dict[str, Experiment], dict[str, list[Claim]], list[str]]:
    """Every experiment that has results, judged: {folder: Experiment}, {study folder: its setting claims},
    and the titles of those not run yet. The headline experiments get their duplicates marked, the global
    Holm family and the tests of the seed's other claims."""
    found, settings, missing = {}, {}, []
    for folder, title, _ in EXPERIMENTS:
        results = read_results(os.path.join(results_dir, folder))
        if results is None:
            missing.append(title.split(" ", 1)[1])
            continue
        found[folder] = Experiment(folder, title.split(" ", 1)[1], results, claims(results),
                                   wall_clock=wall_clock_claims(results))
        if folder.startswith(SENSITIVITY):
            settings[folder] = setting_claims(results)
    headline = [e for folder, e in found.items() if folder not in settings]
    mark_same_runs(headline)
    global_holm(headline)
    trend_claims(headline)
    for e in headline:
        spread_claims(e)
    return found, settings, missing


def experiment_section(results_dir: str, folder: str, command: str, e: Experiment,
                       settings: list[Claim] | None) -> list[str]:
    """An experiment's section below its title: command, training time, verdicts, its run's results.md."""
    md = open(os.path.join(results_dir, folder, "results.md")).read()
    if settings:  # a study's per-point tables and plots stay in its folder (plots not committed: sizes)
        md = md.split("\n## ", 3)[0] + (f"\n\nPer setting: [results/{folder}/results.md](results/{folder}/results.md)"
                                         " (its plots are written by the command; not committed).\n")
    md = md.replace("](", f"](results/{folder}/").replace("## ", "### ").replace(
        f"](results/{folder}/results/{folder}/", f"](results/{folder}/")
    table = claim_table(e.claims, global_column=settings is None)
    return ["```bash", command, "```", f"Training time of all its runs (all cells, seeds and methods; evaluation "
            f"excluded): {total_train_time(e.results) / 60:.1f} min on {DEVICES.get(folder, 'one core')}.", "",
            "**Verdicts**: SAL − plain, bottom model, last-epoch test accuracy, paired over seeds; p "
            "Holm-adjusted across this table's rows" + ("" if settings is not None else ", and across all distinct "
            "headline claims of RESULTS.md") + ".", "", *table, "",
            *(wall_clock_lines(e) if e.wall_clock else []),
            *(secondary_lines(e) + [""] if settings is None else []),
            *(setting_table(settings) + [""] if settings else []), md]


def wall_clock_lines(e: Experiment) -> list[str]:
    """SAL against the time-matched baseline where the compute-matched one heads the claims: its own table,
    its own Holm family, not in the counts."""
    return [f"**Against plain, time-matched ({WALL_CLOCK})**: its budget is SAL's training time on a shared "
            "machine, which no rerun reproduces (the compute-matched baseline above is its reproducible "
            "counterpart); p Holm-adjusted across these rows alone; not in RESULTS.md's counts.", "",
            *claim_table(e.wall_clock, global_column=False), ""]


def study_lines(studies: list[tuple[str, list[Claim], list[Claim]]], glai_found: list, sparse_found: list) -> list[str]:
    """The summaries kept apart from the headline counts: sensitivity studies, GLAI, sparse levels."""
    lines = (["## Sensitivity studies (not in the counts above)", "", *sensitivity_summary(studies), ""]
             if studies else [])
    if glai_found:
        lines += ["## GLAI against the MLP of equal parameters (section 7; not in the counts above)", "",
                  "Each claim over every run and training-set size: its verdicts counted, the direction of every "
                  "estimate with a two-sided sign test over the cells (a consistent direction is a finding even "
                  "where no cell is significant alone), the significant ones listed (run, training set, mean "
                  "(95% CI); times as ratios GLAI / MLP).", "", *glai_results.summary_lines(glai_found), ""]
    if sparse_found:
        lines += ["## Sparse evolutionary MLPs against dense ones (section 8; not in the counts above)", "",
                  "Each claim over every data set and training-set size: its verdicts counted, the direction of "
                  "every estimate with a two-sided sign test, the significant ones listed (run, training set, "
                  "mean (95% CI)).", "", *glai_results.summary_lines(sparse_found), ""]
    return lines


def main(results_dir: str = "experiments/results", out: str = "experiments/RESULTS.md") -> None:
    found, settings, missing = load(results_dir)
    headline = [e for folder, e in found.items() if folder not in settings]
    sections = []
    for folder, title, command in EXPERIMENTS:
        sections += [f"## {title}", ""] + (experiment_section(results_dir, folder, command, found[folder],
                                                              settings.get(folder)) if folder in found
                                           else ["Not run yet in this repository.", ""])
    studies = [(found[folder].name, found[folder].claims, cl) for folder, cl in settings.items()]
    glai_sections, glai_found = method_parts(results_dir, GLAI_RUNS, glai_results.run_claims, glai_results.section)
    sparse_sections, sparse_found = method_parts(
        results_dir, SPARSE_RUNS, lambda path: {"accuracy": sparse_results.run_claims(path)},
        lambda path, prefix: sparse_results.section(path, link_prefix=prefix))
    with open(out, "w") as f:
        f.write("\n".join(["# Results", ""] + summary_lines(headline, missing)
                          + study_lines(studies, glai_found, sparse_found) + INTRO + headline_table(headline) + [""]
                          + sections + glai_sections + sparse_sections))
    print(f"wrote {out}")


if __name__ == "__main__":
    main(*sys.argv[1:])
