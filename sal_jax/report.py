"""Summaries of runs: JSON-able records, markdown tables over seeds, and plots."""
from __future__ import annotations

import os
import re
from typing import Any, Sequence

import numpy as np

from sal_jax.ladder import LadderResult, LevelRun

Record = dict[str, Any]
BASELINES = {"plain_epoch_matched": "plain, epoch-matched", "plain_time_matched": "plain, time-matched"}
ABLATION_LABELS = {"hidden_only": "SAL hidden-only", "output_only": "SAL output-only"}


def run_record(run: LevelRun) -> Record:
    """A LevelRun's record with its final and best test accuracy, for results.json."""
    return {**run.record(), "final_test_accuracy": run.final_test_accuracy,
            "best_test_accuracy": run.best_test_accuracy}


def ladder_record(result: LadderResult, seed: int) -> Record:
    baselines = {"plain_epoch_matched": result.plain_epoch_matched, "plain_time_matched": result.plain_time_matched}
    return {"seed": seed, "sal_train_time": result.sal_train_time,
            "sal": [run_record(run) for run in result.sal],
            **{key: run_record(run) for key, run in baselines.items() if run is not None}}


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
    v = np.asarray(values, dtype=float) * scale
    return f"{v.mean():.{digits}f} ± {v.std():.{digits}f}" if len(v) > 1 else f"{v[0]:.{digits}f}"


def markdown_table(records: Sequence[Record]) -> str:
    """Test accuracy (%) at the last and the best evaluated epoch, mean ± std over seeds, and cost."""
    lines = [f"seeds: {[rec['seed'] for rec in records]} (mean ± std over seeds; SAL's total training time "
             f"{mean_std([rec['sal_train_time'] for rec in records], digits=2)} s)", "",
             "| method | test acc, last (%) | test acc, best (%) | epochs | steps | train time (s) |",
             "| --- | --- | --- | --- | --- | --- |"]
    for name, runs in method_rows(records):
        lines.append(f"| {name} | {mean_std([r['final_test_accuracy'] for r in runs], 100)} "
                     f"| {mean_std([r['best_test_accuracy'] for r in runs], 100)} "
                     f"| {mean_std([len(r['history']) for r in runs], digits=0)} "
                     f"| {mean_std([r['steps'] for r in runs], digits=0)} "
                     f"| {mean_std([r['train_time'] for r in runs], digits=2)} |")
    return "\n".join(lines)


def summary_table(cells: Sequence[Record]) -> str:
    """One row per training-set size: the bottom model's last-epoch test accuracy (%) for each method."""
    names = [name for name, _ in method_rows(cells[0]["runs"]) if not name.startswith("SAL level") or "bottom" in name]
    lines = ["| train examples | " + " | ".join(names) + " |", "|" + " --- |" * (len(names) + 1)]
    for cell in cells:
        by_name = dict(method_rows(cell["runs"]))
        size = f"{cell['dataset']['train']:,}" + (f" ({cell['per_class']}/class)" if cell["per_class"] else " (full)")
        lines.append(f"| {size} | " + " | ".join(
            mean_std([r["final_test_accuracy"] for r in by_name[n]], 100) for n in names) + " |")
    return "\n".join(lines)


def write_report(results: Record, workdir: str) -> str:
    """results.md (summary + a table per cell) and the plots; returns the markdown."""
    cells = results["cells"]
    parts = ["## Summary: bottom model, test accuracy at the last epoch (%), mean ± std over seeds", "",
             summary_table(cells)]
    for cell in cells:
        tag = f"pc{cell['per_class']}" if cell["per_class"] else "full"
        title = f"{cell['dataset']['name']}, {cell['dataset']['train']:,} training examples"
        parts += ["", f"## {title} ({cell['epochs']} epochs per level)", "", markdown_table(cell["runs"]), "",
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


def _pyplot():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def _evaluated(history: Sequence[Record]) -> list[Record]:
    return [row for row in history if "test_accuracy" in row]


def plot_accuracy_vs_time(records: Sequence[Record], path: str, title: str = "") -> None:
    """Test accuracy against cumulative training time: SAL level by level, and the baselines."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for i, rec in enumerate(records):
        offset = 0.0
        for j, run in enumerate(rec["sal"]):  # one segment per level: a new level starts a new curve
            rows = _evaluated(run["history"])
            ax.plot([offset + r["train_time"] for r in rows], [r["test_accuracy"] for r in rows], color="C0",
                    alpha=0.8, label="SAL, level by level" if i == j == 0 else None)
            offset += run["train_time"]
            if i == 0:
                ax.axvline(offset, color="C0", alpha=0.25, linestyle=":")
        for (key, label), color in zip(BASELINES.items(), ("C1", "C2")):
            if key in rec:
                rows = _evaluated(rec[key]["history"])
                ax.plot([r["train_time"] for r in rows], [r["test_accuracy"] for r in rows], color=color,
                        alpha=0.8, label=label if i == 0 else None)
    ax.set_xlabel("training wall time (s, compilation included, evaluation excluded)")
    ax.set_ylabel("test accuracy")
    ax.set_title(f"{title}: one line per seed" if title else "one line per seed")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_grad_norms(records: Sequence[Record], path: str, title: str = "") -> None:
    """Per-layer gradient norm of the bottom model, first and last epoch, SAL vs plain (median over seeds)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.5))
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
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _layer_order(key: str) -> tuple[int, int, str]:
    """Input to output: dense_2 before dense_10 (not string order), the head last."""
    name = key.split("/", 1)[1]
    index = re.search(r"(\d+)$", name)
    return (name == "head", int(index.group(1)) if index else -1, name)


def plot_level_accuracy(cells: Sequence[Record], path: str) -> None:
    """Final test accuracy of every SAL level (mean ± std over seeds), one line per training-set size,
    with the plain epoch-matched bottom model as a marker."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for i, cell in enumerate(cells):
        records = cell["runs"]
        accs = np.array([[r["final_test_accuracy"] for r in _last_round(rec["sal"])] for rec in records])
        levels = np.arange(1, accs.shape[1] + 1)
        label = f"{cell['per_class']}/class" if cell["per_class"] else "full"
        ax.errorbar(levels, accs.mean(0), yerr=accs.std(0), marker="o", capsize=3, color=f"C{i}",
                    label=f"SAL, {label}")
        if "plain_epoch_matched" in records[0]:
            plain = [rec["plain_epoch_matched"]["final_test_accuracy"] for rec in records]
            ax.errorbar([levels[-1] + 0.15], [np.mean(plain)], yerr=[np.std(plain)], marker="x", capsize=3,
                        color=f"C{i}", linestyle="none", label=f"plain bottom, {label}")
    ax.set_xticks(levels)
    ax.set_xlabel("level (1 = simplest)")
    ax.set_ylabel("test accuracy, last epoch")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
