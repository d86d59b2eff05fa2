"""Summaries of runs: JSON-able records, markdown tables over seeds, and plots.

Each plot has a `*_figure` function that returns the matplotlib Figure (tests read its legends) and a
`plot_*` function that saves it.
"""
from __future__ import annotations

import math
import os
import re
from typing import Any, Sequence

import numpy as np
from matplotlib.figure import Figure

from sal_jax import families, stats
from sal_jax.ladder import LadderResult
from sal_jax.sweep import point_label, point_tag
from sal_jax.records import LevelRun

Record = dict[str, Any]
# The plain baselines as the tables and plots name them, in their columns' order: the two reproducible
# ones (epochs, FLOPs: sal_jax.compute_budget), then the wall-clock one.
BASELINES = {"plain_epoch_matched": "plain, epoch-matched", "plain_compute_matched": "plain, compute-matched",
             "plain_time_matched": "plain, time-matched"}
ABLATION_LABELS = {"hidden_only": "SAL hidden-only", "output_only": "SAL output-only"}
NO_BASELINE = ("No plain baseline to compare with: config.baselines.epoch_matched, .compute_matched and "
               ".time_matched are all off.")
# The criterion of sal_jax.level_loop.train_level's `diverged` flag.
DIVERGED_NOTE = ("diverged: its last epoch's training cross-entropy is above twice that of uniform guessing "
                 "(2 × the log of the class count)")


def run_record(run: LevelRun) -> Record:
    """A LevelRun's record with its final and best test accuracy and its parameter count, for results.json."""
    return {**run.record(), "final_test_accuracy": run.final_test_accuracy,
            "best_test_accuracy": run.best_test_accuracy, "num_params": param_count(run.variables)}


def param_count(variables: Record) -> int:
    """Parameters of a level's variables: its trained ones, not BatchNorm statistics; for variables of a
    family with collections of its own, what that family counts (a frozen GLAI level's structure too,
    weights it needs to compute its outputs; of a sparse level, only its live ones; sal_jax.families)."""
    family = families.of_variables(variables)
    return families.trained_params(variables) if family is None else family.param_count(variables)


def ladder_record(result: LadderResult, seed: int) -> Record:
    """A seed's record: SAL's runs, the bottom level's baselines under their kinds, and (with
    config.baselines.every_level) the other levels' under "plain_levels": {"<level>": {kind: record}}."""
    baselines = {"plain_epoch_matched": result.plain_epoch_matched, "plain_time_matched": result.plain_time_matched,
                 "plain_compute_matched": result.plain_compute_matched}
    bottom = max(run.level for run in result.sal)
    above = {str(level): {kind: run_record(run) for kind, run in runs.items()}
             for level, runs in result.plain.items() if level != bottom}
    return {"seed": seed, "sal_train_time": result.sal_train_time, "sal_flops": result.sal_flops,
            "sal": [run_record(run) for run in result.sal],
            **{key: run_record(run) for key, run in baselines.items() if run is not None},
            **({"plain_levels": above} if above else {})}


def _last_round(sal_runs: Sequence[Record]) -> list[Record]:
    rounds = max(run["round"] for run in sal_runs)
    return [run for run in sal_runs if run["round"] == rounds]


def method_rows(records: Sequence[Record]) -> list[tuple[str, list[Record]]]:
    """(method, its run in each seed): SAL's levels (last round), the ablations' bottom level, baselines."""
    rows = []
    levels = _last_round(records[0]["sal"])
    for i, run in enumerate(levels):
        rows.append((f"SAL level {run['level']}" + (" (bottom)" if i == len(levels) - 1 else ""),
                     [_last_round(rec["sal"])[i] for rec in records]))
    for key, label in ABLATION_LABELS.items():
        if key in records[0]:
            rows.append((f"{label}, bottom", [_last_round(rec[key]["sal"])[-1] for rec in records]))
    for key, label in BASELINES.items():
        if key in records[0]:
            rows.append((label, [rec[key] for rec in records]))
    return rows


def mean_std(values: Sequence[float], scale: float = 1.0, digits: int = 1) -> str:
    """'mean ± sd' over seeds, the sample SD (ddof = 1: the seeds are a sample of the runs one could make)."""
    v = np.asarray(values, dtype=float) * scale
    return f"{v.mean():.{digits}f} ± {v.std(ddof=1):.{digits}f}" if len(v) > 1 else f"{v[0]:.{digits}f}"


def diverged_mark(runs: Sequence[Record]) -> str:
    """' (diverged...)' when any seed's run diverged, else ''. Records older than the field never diverged."""
    count = sum(bool(run.get("diverged", False)) for run in runs)
    if count == 0:
        return ""
    return " (diverged)" if len(runs) == 1 else f" (diverged: {count} of {len(runs)} seeds)"


def _params(runs: Sequence[Record]) -> str:
    counts = {run["num_params"] for run in runs if "num_params" in run}  # absent from older records
    return "—" if not counts else " / ".join(f"{c:,}" for c in sorted(counts))


def _flops(runs: Sequence[Record], key: str = "flops") -> str:
    """FLOPs (XLA's count) over seeds, e.g. '2.82e+10'; a range where seeds differ (a member that failed);
    '—' in records written before they were counted."""
    values = [run.get(key) for run in runs]
    if any(v is None for v in values):
        return "—"
    low, high = min(values), max(values)
    return f"{low:.3g}" if low == high else f"{low:.3g}–{high:.3g}"


def markdown_table(records: Sequence[Record]) -> str:
    """Test accuracy (%) at the last and the best evaluated epoch, mean ± std over seeds, size and cost
    (training time: wall clock; FLOPs: XLA's count of the training steps, sal_jax.compute_budget)."""
    flops = "" if records[0].get("sal_flops") is None else f", FLOPs {_flops(records, 'sal_flops')}"
    lines = [f"seeds: {[rec['seed'] for rec in records]} (mean ± std over seeds; SAL's total training time "
             f"{mean_std([rec['sal_train_time'] for rec in records], digits=2)} s{flops})", "",
             "| method | params | test acc, last (%) | test acc, best (%) | epochs | steps | train time (s) "
             "| training FLOPs |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    any_diverged = False
    for name, runs in method_rows(records):
        mark = diverged_mark(runs)
        any_diverged |= bool(mark)
        lines.append(f"| {name}{mark} | {_params(runs)} "
                     f"| {mean_std([r['final_test_accuracy'] for r in runs], 100)} "
                     f"| {mean_std([r['best_test_accuracy'] for r in runs], 100)} "
                     f"| {mean_std([len(r['history']) for r in runs], digits=0)} "
                     f"| {mean_std([r['steps'] for r in runs], digits=0)} "
                     f"| {mean_std([r['train_time'] for r in runs], digits=2)} | {_flops(runs)} |")
    if any_diverged:
        lines += ["", DIVERGED_NOTE]
    return "\n".join(lines)


def level_table(records: Sequence[Record]) -> str:
    """Per level: SAL (last round) against the same level trained plain, last-epoch test accuracy (%),
    mean ± std over seeds, the best of each row in bold; then the best model overall, and whether it is
    the target (SAL's bottom level). Levels above the bottom have plain runs with
    config.baselines.every_level; "—" where a level was not trained that way."""
    sal = _last_round(records[0]["sal"])
    bottom = sal[-1]["level"]

    def plain(level: int, kind: str) -> list[Record] | None:
        if level == bottom:
            return [rec[kind] for rec in records] if kind in records[0] else None
        found = [rec.get("plain_levels", {}).get(str(level), {}).get(kind) for rec in records]
        return None if None in found else found

    # the baselines the records have at any level (results from before the compute-matched baseline lack it)
    kinds = {kind: label for kind, label in BASELINES.items() if any(plain(run["level"], kind) for run in sal)}
    kinds = kinds or {k: BASELINES[k] for k in ("plain_epoch_matched", "plain_time_matched")}
    candidates = {}  # label -> mean accuracy
    lines = ["| level | params | SAL | " + " | ".join(kinds.values()) + " |", "|" + " --- |" * (3 + len(kinds))]
    for i, run in enumerate(sal):
        level = run["level"]
        cells = {"SAL": [_last_round(rec["sal"])[i] for rec in records],
                 **{label: plain(level, kind) for kind, label in kinds.items()}}
        means = {name: np.mean([r["final_test_accuracy"] for r in runs]) for name, runs in cells.items() if runs}
        best = max(means, key=means.get)
        texts = []
        for name, runs in cells.items():
            text = "—" if not runs else mean_std([r["final_test_accuracy"] for r in runs], 100) + diverged_mark(runs)
            texts.append(f"**{text}**" if name == best and len(means) > 1 else text)
            if runs:
                candidates[f"{name}, level {level}"] = means[name]
        lines.append(f"| {level}{' (bottom)' if level == bottom else ''} | {_params(cells['SAL'])} | "
                     + " | ".join(texts) + " |")
    winner = max(candidates, key=candidates.get)
    target = f"SAL, level {bottom}"
    verdict = ("the target (SAL's bottom level) is the best model" if winner == target else
               f"the target (SAL's bottom level, {100 * candidates[target]:.1f}) is not the best model")
    lines += ["", f"Best model overall (mean last-epoch test accuracy): {winner}, {100 * candidates[winner]:.1f}%; "
              f"{verdict}."]
    return "\n".join(lines)


def bottom_rows(records: Sequence[Record]) -> dict[str, list[Record]]:
    """method_rows without SAL's upper levels, its bottom level named "SAL, bottom level" (cells of a
    sweep over ladder shapes have different bottom levels)."""
    return {"SAL, bottom level" if name.endswith("(bottom)") else name: runs
            for name, runs in method_rows(records) if not name.startswith("SAL level") or "bottom" in name}


def summary_table(cells: Sequence[Record]) -> str:
    """One row per cell (training-set size, sweep point): the bottom model's last-epoch test accuracy (%)
    for each method ("—" where a cell has no such method)."""
    rows = [bottom_rows(cell["runs"]) for cell in cells]
    names = list(dict.fromkeys(name for row in rows for name in row))  # every cell's methods, in order
    lines = ["| train examples | " + " | ".join(names) + " |", "|" + " --- |" * (len(names) + 1)]
    any_diverged = False
    for cell, by_name in zip(cells, rows):
        marks = [diverged_mark(by_name[n]) if n in by_name else "" for n in names]
        any_diverged |= any(marks)
        lines.append(f"| {cell_name(cell)} | " + " | ".join(
            mean_std([r["final_test_accuracy"] for r in by_name[n]], 100) + mark if n in by_name else "—"
            for n, mark in zip(names, marks)) + " |")
    if any_diverged:
        lines += ["", DIVERGED_NOTE]
    return "\n".join(lines)


def cell_tag(cell: Record) -> str:
    """A cell's name in files and folders: 'full', or 'pc<N>' for N training examples per class, then its
    sweep point's tag if any ('pc100_hidden_weight0.1')."""
    size = f"pc{cell['per_class']}" if cell["per_class"] else "full"
    return "_".join(filter(None, [size, point_tag(cell.get("point", {}))]))


def cell_name(cell: Record) -> str:
    """'1,000 (100/class)', '1,257 (full)', then the sweep point if any: '1,000 (100/class), hidden_weight=0.1'."""
    size = f"{cell['dataset']['train']:,}" + (f" ({cell['per_class']}/class)" if cell["per_class"] else " (full)")
    return ", ".join(filter(None, [size, point_label(cell.get("point", {}))]))


def _number(value: float, spec: str) -> str:
    return "—" if np.isnan(value) else format(value, spec)  # NaN: undefined (one seed; d_z when sd = 0)


def _interval(low: float, high: float, spec: str) -> str:
    return "—" if np.isnan(low) else f"[{low:{spec}}, {high:{spec}}]"  # NaN: one seed has no CI


def paired_table(cells: Sequence[Record]) -> str:
    """SAL's bottom level minus each plain baseline, last-epoch test accuracy (points), paired per seed:
    mean, 95% CI, Cohen's d_z, the paired t-test's p Holm-adjusted over every comparison of the table,
    and the verdict (sal_jax.stats). NO_BASELINE when no cell has a baseline."""
    rows = []
    for cell in cells:
        by_name = dict(method_rows(cell["runs"]))
        sal = next(runs for name, runs in by_name.items() if name.endswith("(bottom)"))
        for baseline in (label for label in BASELINES.values() if label in by_name):
            diff = [100 * (a["final_test_accuracy"] - b["final_test_accuracy"]) for a, b in zip(sal, by_name[baseline])]
            rows.append((cell_name(cell), baseline, stats.paired_summary(diff)))
    if not rows:
        return NO_BASELINE
    adjusted = stats.holm([summary.p for *_, summary in rows])
    lines = ["| cell | SAL bottom minus | seeds | mean | 95% CI | d_z | p (Holm) | verdict |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for (name, baseline, s), p in zip(rows, adjusted):
        lines.append(f"| {name} | {baseline} | {s.n} | {s.mean:+.2f} | {_interval(s.ci_low, s.ci_high, '+.2f')} | "
                     f"{_number(s.d_z, '+.2f')} | {_number(p, '.3g')} | {stats.verdict(s, p)} |")
    return "\n".join(lines)


def write_report(results: Record, workdir: str) -> str:
    """Writes results.md (summary + a table per cell), accuracy_vs_time_<tag>.png per cell,
    grad_norms_<tag>.png per cell that recorded gradient norms, and level_accuracy.png; returns the
    markdown. (results.json is written by sal_jax.train.)"""
    cells = results["cells"]
    parts = ["## Summary: bottom model, test accuracy at the last epoch (%), mean ± std over seeds", "",
             summary_table(cells), "", "## SAL against plain, paired per seed (accuracy points)", "",
             paired_table(cells)]
    for cell in cells:
        tag = cell_tag(cell)
        title = f"{cell['dataset']['name']}, {cell['dataset']['train']:,} training examples" + "".join(
            f", {label}" for label in [point_label(cell.get("point", {}))] if label)
        epochs = f"{cell['epochs']} epoch{'s' * (cell['epochs'] != 1)}"
        parts += ["", f"## {title} ({epochs} per level)", "", markdown_table(cell["runs"]), "",
                  "### Which level is best: each level, SAL against plain", "", level_table(cell["runs"]), "",
                  f"![accuracy vs time](accuracy_vs_time_{tag}.png)"]
        plot_accuracy_vs_time(cell["runs"], os.path.join(workdir, f"accuracy_vs_time_{tag}.png"), title)
        if any(k.startswith("train_grad_norm/") for k in cell["runs"][0]["sal"][-1]["history"][0]):
            plot_grad_norms(cell["runs"], os.path.join(workdir, f"grad_norms_{tag}.png"), title)
            parts.append(f"![gradient norms](grad_norms_{tag}.png)")
    plot_level_accuracy(cells, os.path.join(workdir, "level_accuracy.png"))
    parts += ["", "![per-level accuracy](level_accuracy.png)"]
    text = "\n".join(parts) + "\n"
    with open(os.path.join(workdir, "results.md"), "w") as f:
        f.write(text)
    return text


def _save(fig: Figure, path: str) -> None:
    fig.savefig(path, dpi=110)  # a bare Figure (no pyplot): nothing global to set up or close


def _evaluated(history: Sequence[Record]) -> list[Record]:
    return [row for row in history if "test_accuracy" in row]


TIME_LABEL = "training time (s; compilation, evaluation, checkpoints and logging excluded)"
BASELINE_STYLE = {"plain_epoch_matched": ("C1", "x"), "plain_compute_matched": ("C2", "^"),
                  "plain_time_matched": ("C3", "s")}


def _level_colors(n: int) -> list:
    """Shades of blue, light (level 1) to dark (the bottom): SAL's levels, apart from the baselines' colors."""
    from matplotlib import colormaps
    return [colormaps["Blues"](0.45 + 0.55 * i / max(n - 1, 1)) for i in range(n)]


def _line(ax, xs: Sequence[float], ys: Sequence[float], **style) -> None:
    """A curve, with its points marked when there are few (a level evaluated once would be invisible)."""
    ax.plot(xs, ys, lw=1.2, marker="o" if len(xs) <= 10 else None, markersize=3, **style)


def accuracy_vs_time_figure(records: Sequence[Record], title: str = "") -> Figure:
    """Test accuracy against cumulative training time, one line per seed, in two panels on one time axis.

    Left: the SAL ladder level by level (each level starts from fresh weights, so each restarts low), with
    the mean time at which each level ends. Right: SAL's bottom level, where it sits in the ladder's time,
    against the plain baselines (the time- and compute-matched ones train for the whole ladder's time and
    FLOPs)."""
    fig = Figure(figsize=(11, 5))
    ax_sal, ax_cmp = fig.subplots(1, 2, sharex=True, sharey=True)
    runs = records[0]["sal"]
    colors = _level_colors(max(run["level"] for run in runs))
    rounds = max(run["round"] for run in runs)

    def run_name(run: Record) -> str:
        return f"level {run['level']}" + (f", round {run['round']}" if rounds > 1 else "")

    ends = np.mean([np.cumsum([run["train_time"] for run in rec["sal"]]) for rec in records], axis=0)
    for i, rec in enumerate(records):
        offset = 0.0
        for j, run in enumerate(rec["sal"]):
            rows = _evaluated(run["history"])
            xs, ys = [offset + r["train_time"] for r in rows], [r["test_accuracy"] for r in rows]
            _line(ax_sal, xs, ys, color=colors[run["level"] - 1],  # a color per level, in every round
                  label=f"SAL level {run['level']}" if i == 0 and run["round"] == 1 else None)
            if j == len(rec["sal"]) - 1:
                _line(ax_cmp, xs, ys, color=colors[-1],
                      label=f"SAL bottom ({run_name(run)}), after the levels above" if i == 0 else None)
            offset += run["train_time"]
        for key, label in BASELINES.items():
            if key in rec:
                rows = _evaluated(rec[key]["history"])
                # Dashed and on top: the time-matched run repeats the epoch-matched one until that one ends.
                dashed = key == "plain_epoch_matched"
                _line(ax_cmp, [r["train_time"] for r in rows], [r["test_accuracy"] for r in rows],
                      color=BASELINE_STYLE[key][0], alpha=0.85, linestyle="--" if dashed else "-",
                      zorder=3 if dashed else 2, label=label if i == 0 else None)
    for ax in (ax_sal, ax_cmp):
        for end in ends:
            ax.axvline(end, color="0.5", lw=0.8, linestyle=":")
        # The level boundaries, labelled on a top axis: a legend entry cannot say which line is which.
        top = ax.secondary_xaxis("top")
        top.set_xticks(ends, [str(run["level"]) + (f" (r{run['round']})" if rounds > 1 else "") for run in runs],
                       fontsize=8)
        top.set_xlabel("dotted: end of SAL level (mean over seeds)", fontsize=8)
        ax.set_xlabel(TIME_LABEL, fontsize=8)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="best")
    ax_sal.set_ylabel("test accuracy")
    ax_sal.set_title("SAL, level by level (" + ("each level starts from fresh weights)" if rounds == 1 else
                     "fresh weights in round 1, then each level's own)"), fontsize=10)
    ax_cmp.set_title("bottom model: SAL vs plain training", fontsize=10)
    fig.suptitle(f"{title}: one line per seed" if title else "one line per seed", fontsize=11)
    fig.tight_layout()
    return fig


def plot_accuracy_vs_time(records: Sequence[Record], path: str, title: str = "") -> None:
    _save(accuracy_vs_time_figure(records, title), path)


def grad_norms_figure(records: Sequence[Record], title: str = "") -> Figure:
    """Per-layer gradient norm of the bottom model, first and last epoch, SAL vs plain (median over seeds)."""
    fig = Figure(figsize=(7, 4.5))
    ax = fig.subplots()
    runs = {"SAL bottom": [_last_round(rec["sal"])[-1] for rec in records]}
    if "plain_epoch_matched" in records[0]:
        runs["plain, epoch-matched"] = [rec["plain_epoch_matched"] for rec in records]
    for (label, seed_runs), color in zip(runs.items(), ("C0", "C1")):
        layers = sorted((k for k in seed_runs[0]["history"][0] if k.startswith("train_grad_norm/")),
                        key=_layer_order)
        for epoch, style in ((0, "--"), (-1, "-")):
            norms = np.median([[run["history"][epoch][k] for k in layers] for run in seed_runs], axis=0)
            ax.semilogy(range(len(layers)), norms, style, color=color,
                        label=f"{label}, {'first' if epoch == 0 else 'last'} epoch")
        ax.set_xticks(range(len(layers)), [k.split("/", 1)[1] for k in layers], rotation=60, fontsize=7)
    ax.set_ylabel("gradient L2 norm (mean over the epoch's steps)")
    ax.set_title(f"{title}: gradient norm per layer")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_grad_norms(records: Sequence[Record], path: str, title: str = "") -> None:
    _save(grad_norms_figure(records, title), path)


def _layer_order(key: str) -> tuple[int, int, str]:
    """Input to output: dense_2 before dense_10 (not string order), the head last."""
    name = key.split("/", 1)[1]
    index = re.search(r"(\d+)$", name)
    return (name == "head", int(index.group(1)) if index else -1, name)


def level_accuracy_figure(cells: Sequence[Record]) -> Figure:
    """Final test accuracy of every SAL level (mean ± std over seeds), one color per training-set size
    (and sweep point), with the plain baselines of the bottom model beside the last level (a marker each)."""
    from matplotlib import colormaps
    entries = sum(1 + sum(key in cell["runs"][0] for key in BASELINES) for cell in cells)
    columns = math.ceil(entries / 24)  # legend columns beside the axes: a sweep of many points fits
    fig = Figure(figsize=(7 + 3.7 * columns * (len(cells) > 1), 4.5 + 1.5 * (columns > 1)))
    ax = fig.subplots()
    # A color per cell: the default cycle's ten, or beyond ten (a sweep of many points, whose cells the cycle
    # would repeat) a colormap sampled once per cell, the line style cycling so that neighbours differ in it too.
    many = len(cells) > 10
    colors = colormaps["turbo"](np.linspace(0.02, 0.98, len(cells))) if many else [f"C{i}" for i in range(len(cells))]
    styles = ["-", "--", ":", "-."] if many else ["-"]
    ladders = []
    for i, cell in enumerate(cells):
        records = cell["runs"]
        accs = np.array([[r["final_test_accuracy"] for r in _last_round(rec["sal"])] for rec in records])
        levels = np.arange(1, accs.shape[1] + 1)
        size = ", ".join(filter(None, [f"{cell['per_class']}/class" if cell["per_class"] else "full",
                                       point_label(cell.get("point", {}))]))
        ax.errorbar(levels, accs.mean(0), yerr=accs.std(0, ddof=min(1, len(accs) - 1)), marker="o", capsize=3, color=colors[i],
                    linestyle=styles[i % len(styles)], label=f"SAL, {size}")
        # one marker per baseline the cell has, 0.18 apart to the right of the bottom level
        for j, (key, label) in enumerate((k, v) for k, v in BASELINES.items() if k in records[0]):
            plain = [rec[key]["final_test_accuracy"] for rec in records]
            ax.errorbar([levels[-1] + 0.18 * (j + 1)], [np.mean(plain)], yerr=[np.std(plain, ddof=min(1, len(plain) - 1))],
                        marker=BASELINE_STYLE[key][1], markersize=7, capsize=3, color=colors[i],
                        linestyle="none", markerfacecolor="none", label=f"{label}, {size}")
        ladders.append([run.get("num_params") for run in _last_round(records[0]["sal"])])
    levels = np.arange(1, max(map(len, ladders)) + 1)
    # parameter counts under the levels only when every cell has the same ladder (a sweep over shapes does not)
    params = ladders[0] if all(ladder == ladders[0] for ladder in ladders) else [None] * len(levels)
    ax.set_xticks(levels, [f"{k}\n{p:,} params" if p else str(k) for k, p in zip(levels, params)])
    ax.set_xlim(levels[0] - 0.3, levels[-1] + 0.18 * max(len(BASELINES), 2) + 0.15)
    ax.set_xlabel("SAL level (1 = simplest); the bottom model's plain baselines to the right of it")
    ax.set_ylabel("test accuracy, last epoch (mean ± std over seeds)")
    ax.grid(alpha=0.3)
    if len(cells) > 1:  # three entries per training-set size: beside the axes, not over the lines
        ax.legend(fontsize=7 if columns > 1 else 8, loc="upper left", bbox_to_anchor=(1.01, 1.0), ncols=columns)
    else:
        ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_level_accuracy(cells: Sequence[Record], path: str) -> None:
    _save(level_accuracy_figure(cells), path)
