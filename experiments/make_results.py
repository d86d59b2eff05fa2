"""Builds experiments/RESULTS.md from the experiments' results.json files, with a verdict per claim.

    python experiments/make_results.py [RESULTS_DIR [OUT]]    (default: experiments/results experiments/RESULTS.md)

Verdicts are computed, not written by hand, with `sal_jax.stats` (its docstring has the formulas). A
claim is "SAL's bottom model beats a plain baseline (epoch- or time-matched)" in one cell. SAL and a
baseline of the same seed share initial weights and batch order, so each claim is judged on the per-seed
differences d = SAL - plain in last-epoch test accuracy (points): n, mean, 95% t CI, Cohen's d_z and the
two-sided paired t-test's p, Holm-adjusted across one experiment's claim table (both baselines x every
cell). The verdict: "holds" / "reversed" when the adjusted p < 0.05 (sign of the mean), else "no
difference larger than X points" when the CI lies within +-X <= stats.PRACTICAL_THRESHOLD, else
"inconclusive (CI from a to b)"; "inconclusive (one seed)" with one seed. "Larger gain with less data"
and "more stable across seeds" are reported descriptively (means and stds, untested). RESULTS.md opens
with a summary of every claim grouped by verdict.
"""
from __future__ import annotations

import os
import sys
from typing import Any

import numpy as np

sys.path[:0] = [os.path.dirname(__file__), os.path.join(os.path.dirname(__file__), "..")]  # *_results; sal_jax
import glai_results  # noqa: E402
import sparse_results  # noqa: E402
from claims import Claim, _num, _p, judged, read_results, verdict_label  # noqa: E402,F401 (used by importers too)
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


COMPARED = ("plain, epoch-matched", "plain, time-matched")


def claims(results: dict[str, Any]) -> list[Claim]:
    """One claim per baseline and cell (the rows of the experiment's claim table, in order), Holm-adjusted
    together: the table is the family."""
    rows = []
    for baseline in COMPARED:
        for cell in results["cells"]:
            diff = bottom_accuracies(cell, "SAL") - bottom_accuracies(cell, baseline)
            rows.append((baseline, cell_name(cell), stats.paired_summary(diff)))
    return judged(rows)


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
        diff = bottom_accuracies(cell, "SAL") - bottom_accuracies(base, "SAL")
        other = another_bottom(results, cell)
        rows.append(("SAL at the default", cell_name(cell) + (f" {ANOTHER_BOTTOM}" if other else ""),
                     stats.paired_summary(diff)))
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
            key = "holds" if c.verdict == "holds" else "reversed" if c.verdict == "reversed" else (
                "no difference" if c.verdict.startswith("no difference") else "inconclusive")
            counts[key] = counts.get(key, 0) + 1
        label = lambda c: c.cell.split(" (")[0] + (f" {ANOTHER_BOTTOM}" if ANOTHER_BOTTOM in c.cell else "")
        better = [label(c) for c in settings if c.verdict == "holds"]
        worse = [label(c) for c in settings if c.verdict == "reversed"]
        lines.append(f"- {name}: SAL vs plain at {len(cl) // len(COMPARED)} settings x 2 baselines: "
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


def claim_table(cl: list[Claim]) -> list[str]:
    lines = ["| claim: SAL beats | training set | seeds | SAL − plain (pts) | 95% CI | d_z | p (Holm) | verdict |",
             "|" + " --- |" * 8]
    for c in cl:
        s = c.summary
        lines.append(f"| {c.baseline} | {c.cell} | {s.n} | {_num(s.mean)} | "
                     + ("–" if s.n < 2 else f"{_num(s.ci_low)} to {_num(s.ci_high)}")
                     + f" | {_num(s.d_z, '+.2f')} | {_p(c.p_holm)} | **{verdict_label(c)}** |")
    if any(c.significant_unadjusted_only for c in cl):
        lines += ["", "† The unadjusted 95% CI excludes 0, but the Holm-adjusted p is not below 0.05: not "
                  "significant once the table's other claims are accounted for."]
    return lines


def verdict_lines(results: dict[str, Any], cl: list[Claim]) -> list[str]:
    cells = results["cells"]
    lines = claim_table(cl) + [""]
    if len({cell["per_class"] for cell in cells}) > 1:  # a sweep over training-set sizes
        small, large = cells[0], cells[-1]
        mean = {c.cell: c.summary.mean for c in cl if c.baseline == "plain, epoch-matched"}
        d_small, d_large = mean[cell_name(small)], mean[cell_name(large)]
        lines.append(f"- Larger gain with less data (descriptive: means only, not tested, not in the Holm family): "
                     f"SAL − plain (epoch-matched) is {d_small:+.1f} pts at {cell_name(small)} vs {d_large:+.1f} "
                     f"pts at {cell_name(large)}; see the two cells' CIs above")
    spread = []
    for cell in cells:
        s_sal, s_plain = bottom_accuracies(cell, "SAL").std(), bottom_accuracies(cell, "plain, epoch-matched").std()
        spread.append(f"{cell_name(cell)}: std {s_sal:.1f} vs {s_plain:.1f}")
    lower = sum(bottom_accuracies(c, "SAL").std() < bottom_accuracies(c, "plain, epoch-matched").std() for c in cells)
    lines.append("- More stable across seeds (descriptive: std of SAL bottom vs plain epoch-matched): "
                 + "; ".join(spread) + f" → lower for SAL in {lower} of {len(cells)} cells")
    return lines


def summary_lines(found: list[tuple[str, list[Claim]]], missing: list[str]) -> list[str]:
    """The one-screen summary: every claim, grouped by verdict, then by experiment (a line) and baseline."""
    every = [c for _, cl in found for c in cl]
    seeds = sorted({c.summary.n for c in every})
    groups = {"holds": ("Holds (SAL significantly better)", lambda v: v == "holds"),
              "reversed": ("Reversed (plain significantly better)", lambda v: v == "reversed"),
              "none": (f"No difference larger than {stats.PRACTICAL_THRESHOLD:g} point",
                       lambda v: v.startswith("no difference")),
              "inconclusive": ("Inconclusive (not significant, CI wider than "
                               f"±{stats.PRACTICAL_THRESHOLD:g} point)", lambda v: v.startswith("inconclusive"))}
    lines = ["## Summary", "",
             f"Computed from the claim tables below: {len(every)} claims \"SAL's bottom model beats the plain "
             "one\" (epoch- or time-matched), one per experiment, training-set size and baseline, each judged on "
             "the paired per-seed differences SAL − plain in last-epoch test accuracy "
             f"({' or '.join(map(str, seeds))} seeds each, per experiment below): mean difference in points and its 95% CI; significance by "
             "the p-value Holm-adjusted across the claims of the experiment's table.", ""]
    for title, match in groups.values():
        chosen = [(name, [c for c in cl if match(c.verdict)]) for name, cl in found]
        count = sum(len(cl) for _, cl in chosen)
        lines.append(f"- **{title}**: {count} of {len(every)}" + (":" if count else "."))
        for name, cl in chosen:  # one line per experiment (both baselines): the summary stays one screen
            by_baseline = []
            for baseline in COMPARED:
                parts = [f"{c.cell.split(' (')[0]} {_num(c.summary.mean)} ({_num(c.summary.ci_low)} to "
                         f"{_num(c.summary.ci_high)})" + (" †" if c.significant_unadjusted_only else "")
                         for c in cl if c.baseline == baseline]
                if parts:
                    by_baseline.append(f"vs {baseline}: " + "; ".join(parts))
            if by_baseline:
                lines.append(f"  - {name}: " + " — ".join(by_baseline))
    if any(c.significant_unadjusted_only for c in every):
        lines.append("- † unadjusted 95% CI excludes 0, not significant after Holm's correction.")
    if missing:
        lines.append("- Not run yet: " + "; ".join(missing) + ".")
    lines += ["", "Format: training set, mean SAL − plain in accuracy points (95% CI). The untested "
              "observations (larger gain with less data, stability across seeds) are in each experiment's section; "
              "which code made each run, in the next.",
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


def headline_rows(title: str, results: dict[str, Any], cl: list[Claim]) -> list[str]:
    rows = []
    for cell in results["cells"]:
        acc = {m: bottom_accuracies(cell, m) for m in ("SAL",) + COMPARED}
        verdicts = [verdict_label(c) for b in COMPARED for c in cl if c.baseline == b and c.cell == cell_name(cell)]
        rows.append(f"| {title.split(' ', 1)[1]} | {cell_name(cell)} | "
                    + " | ".join(f"{a.mean():.1f} ± {a.std():.1f}" for a in acc.values())
                    + f" | {verdicts[0]} | {verdicts[1]} |")
    return rows


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


def main(results_dir: str = "experiments/results", out: str = "experiments/RESULTS.md") -> None:
    intro = ["## How the results were produced and judged", "",
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
             "relevant difference. The CIs are per claim (not widened for the Holm correction).", "",
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
    headline_body, sections, found, missing, seeds, studies = [], [], [], [], set(), []
    for folder, title, command in EXPERIMENTS:
        results = read_results(os.path.join(results_dir, folder))
        parts = sections
        parts += [f"## {title}", ""]
        if results is None:
            parts += ["Not run yet in this repository.", ""]
            missing.append(title.split(" ", 1)[1])
            continue
        cl = claims(results)
        settings = []
        if folder.startswith(SENSITIVITY):
            settings = setting_claims(results)
            studies.append((title.split(" ", 1)[1], cl, settings))
        else:
            found.append((title.split(" ", 1)[1], cl))
            seeds |= {len(cell["runs"]) for cell in results["cells"]}
            headline_body += headline_rows(title, results, cl)
        md = open(os.path.join(results_dir, folder, "results.md")).read()
        if settings:  # a study's per-point tables and plots stay in its folder (plots not committed: sizes)
            md = md.split("\n## ", 3)[0] + (f"\n\nPer setting: [results/{folder}/results.md](results/{folder}/results.md)"
                                             " (its plots are written by the command; not committed).\n")
        md = md.replace("](", f"](results/{folder}/").replace("## ", "### ").replace(
            f"](results/{folder}/results/{folder}/", f"](results/{folder}/")
        parts += ["```bash", command, "```", f"Training time of all its runs (all cells, seeds and methods; evaluation "
                  f"excluded): {total_train_time(results) / 60:.1f} min on {DEVICES.get(folder, 'one core')}.", "",
                  "**Verdicts**: SAL − plain, bottom model, last-epoch test accuracy, paired over seeds; p "
                  "Holm-adjusted across this table's rows.", "", *verdict_lines(results, cl), "",
                  *(setting_table(settings) + [""] if settings else []), md]
    glai_sections, glai_found = method_parts(results_dir, GLAI_RUNS, glai_results.run_claims, glai_results.section)
    sparse_sections, sparse_found = method_parts(
        results_dir, SPARSE_RUNS, lambda path: {"accuracy": sparse_results.run_claims(path)},
        lambda path, prefix: sparse_results.section(path, link_prefix=prefix))
    headline = [f"## Headline: bottom model, last-epoch test accuracy (%), mean ± std over "
                f"{' or '.join(map(str, sorted(seeds)))} seeds (per experiment: its table)", "",
                "| experiment | training set | SAL | plain, epoch-matched | plain, time-matched "
                "| SAL > epoch-matched? | SAL > time-matched? |", "|" + " --- |" * 7, *headline_body]
    if any(c.significant_unadjusted_only for _, cl in found for c in cl):
        headline += ["", "† unadjusted 95% CI excludes 0, not significant after Holm's correction."]
    with open(out, "w") as f:
        study_lines = (["## Sensitivity studies (not in the counts above)", "", *sensitivity_summary(studies), ""]
                       if studies else [])
        if glai_found:
            study_lines += ["## GLAI against the MLP of equal parameters (section 7; not in the counts above)", "",
                            "Each claim over every run and training-set size: its verdicts counted, the significant "
                            "ones listed (run, training set, mean (95% CI); times as ratios GLAI / MLP).", "",
                            *glai_results.summary_lines(glai_found), ""]
        if sparse_found:
            study_lines += ["## Sparse evolutionary MLPs against dense ones (section 8; not in the counts above)", "",
                            "Each claim over every data set and training-set size: its verdicts counted, the "
                            "significant ones listed (run, training set, mean (95% CI)).", "",
                            *glai_results.summary_lines(sparse_found), ""]
        f.write("\n".join(["# Results", ""] + summary_lines(found, missing) + study_lines + intro + headline + [""]
                          + sections + glai_sections + sparse_sections))
    print(f"wrote {out}")



if __name__ == "__main__":
    main(*sys.argv[1:])
