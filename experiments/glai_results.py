"""The GLAI claims of issue #14, judged from a glai.py run (experiments/configs/glai.py): its results.json
(two sweep points per training-set size, `glai` and `mlp`, the same seeds and batches) and, for pruning,
the pruning.json that experiments/glai_pruning.py adds.

    python experiments/glai_results.py RUN_DIR    (prints the section; make_results.py includes it)

Each claim is judged per training-set size on per-seed paired differences (sal_jax.stats: mean, 95% t CI,
d_z, two-sided paired t-test), Holm-adjusted across the rows of its table:
- accuracy (points, last-epoch test accuracy): GLAI vs the MLP of equal parameter count, both plain and
  epoch-matched; the same at GLAI's training time (the MLP's accuracy at the last evaluated epoch it
  reached within GLAI's training time, read from its curve: every epoch is evaluated); SAL over GLAI
  levels against plain GLAI and plain MLP; SAL over MLP levels against plain MLP.
- training time: log(GLAI / MLP) of the plain runs' training time for the same epochs, and of the time and
  steps each needs to reach a target accuracy (99% of the plain MLP's mean last-epoch accuracy in that
  cell); a run that never reaches it is left out and counted.
- structure: when each GLAI level froze (epoch, and whether its flip fraction or the epoch limit decided),
  and its test accuracy then against at the end; the claim that the structure stabilises before the
  weights is judged on the plain GLAI's last-epoch minus freeze-epoch test accuracy.
- pruning: the pruned plain GLAI's accuracy minus the unpruned one's, per kept fraction of hidden units
  and of value weights (no retraining).
Each row shows the test set's majority-class rate; a cell whose two compared models both score below it is
"uninformative". The summary (`summary_lines`) gives, per claim, the sign of every cell's estimate and a
two-sided sign test over the cells: eight negative estimates of eight are a finding (p = 0.008) even when
no cell is significant alone.
"""
from __future__ import annotations

import json
import math
import os
import sys
from dataclasses import dataclass
from typing import Any

import numpy as np
from matplotlib.figure import Figure

sys.path.insert(0, os.path.dirname(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
from claims import (Claim, _num, _p, claim_rows, context_of, final, judged, read_results,  # noqa: E402
                    sign_line, size_label)
from sal_jax import stats  # noqa: E402

PRUNING_WORDS = {"holds": "gains accuracy", "reversed": "loses accuracy"}  # the verdicts of "pruning loses nothing"
TARGET_FRACTION = 0.99  # of the plain MLP's mean last-epoch accuracy: the time-to-accuracy target


def paired_cells(results: dict[str, Any]) -> list[tuple[str, dict[str, Any], dict[str, Any]]]:
    """(size label, glai cell, mlp cell) per training-set size, their seeds checked equal."""
    by_size: dict[int, dict[str, Any]] = {}
    for cell in results["cells"]:
        by_size.setdefault(cell["per_class"], {})[cell["point"]["model.family"]] = cell
    pairs = []
    for per_class, cells in by_size.items():
        glai_cell, mlp_cell = cells["glai"], cells["mlp"]
        if [r["seed"] for r in glai_cell["runs"]] != [r["seed"] for r in mlp_cell["runs"]]:
            raise ValueError(f"glai: the glai and mlp points at {per_class}/class ran different seeds")
        pairs.append((size_label(per_class, glai_cell["dataset"]["train"]), glai_cell, mlp_cell))
    return pairs


def accuracy_at_time(history: list[dict[str, float]], seconds: float) -> float:
    """Test accuracy (points) at the last evaluated epoch whose cumulative training time is within
    `seconds` (the first epoch's if even that one took longer)."""
    rows = [row for row in history if "test_accuracy" in row]
    within = [row for row in rows if row["train_time"] <= seconds] or rows[:1]
    return within[-1]["test_accuracy"] * 100


def time_to_target(record: dict[str, Any], target: float) -> tuple[float, int]:
    """(training seconds, steps) until the first evaluated epoch at or above `target` (points); (inf, -1)
    if never."""
    steps_per_epoch = record["steps"] / len(record["history"])
    for row in record["history"]:
        if "test_accuracy" in row and row["test_accuracy"] * 100 >= target:
            return row["train_time"], int(round(row["epoch"] * steps_per_epoch))
    return math.inf, -1


def accuracy_claims(pairs, data: dict[str, Any] | None = None) -> list[Claim]:
    """The accuracy claims per size; `data` (the run's config.data) gives each cell's majority-class rate."""
    rows = []
    for size, g, m in pairs:
        plain = "plain_epoch_matched"
        at_glai_time = np.array([accuracy_at_time(mr[plain]["history"], gr[plain]["train_time"])
                                 for gr, mr in zip(g["runs"], m["runs"])])
        for claim, a, b in (
                ("GLAI beats the MLP of equal params (plain, same epochs)", final(g["runs"], plain),
                 final(m["runs"], plain)),
                ("GLAI beats the MLP at GLAI's training time", final(g["runs"], plain), at_glai_time),
                ("SAL over GLAI levels beats plain GLAI", final(g["runs"], "sal"), final(g["runs"], plain)),
                ("SAL over GLAI levels beats the plain MLP", final(g["runs"], "sal"), final(m["runs"], plain)),
                ("SAL over MLP levels beats the plain MLP", final(m["runs"], "sal"), final(m["runs"], plain))):
            rows.append((claim, size, stats.paired_scores(a, b), context_of(data, g, a, b)))
    return judged(rows)


def time_rows(pairs) -> list[tuple[str, str, stats.PairedSummary, int]]:
    """(claim, size, summary of 100 * log(GLAI / MLP), runs left out) for the training-time claims."""
    rows = []
    for size, g, m in pairs:
        glai_runs, mlp_runs = [r["plain_epoch_matched"] for r in g["runs"]], [r["plain_epoch_matched"] for r in m["runs"]]
        target = TARGET_FRACTION * float(np.mean(final(m["runs"], "plain_epoch_matched")))
        same_epochs = [math.log(a["train_time"] / b["train_time"]) for a, b in zip(glai_runs, mlp_runs)]
        reached = [(time_to_target(a, target), time_to_target(b, target)) for a, b in zip(glai_runs, mlp_runs)]
        both = [(ga, mb) for ga, mb in reached if ga[1] > 0 and mb[1] > 0]
        rows.append(("training time for the same epochs", size, stats.paired_summary(100 * np.array(same_epochs)), 0))
        if both:  # pairs where neither run reached the target have no ratio
            for what, i in (("time", 0), ("steps", 1)):
                rows.append((f"{what} to the target accuracy ({target:.1f}%)", size,
                             stats.paired_summary(100 * np.array([math.log(ga[i] / mb[i]) for ga, mb in both])),
                             len(reached) - len(both)))
    return rows


@dataclass(frozen=True)
class TimeClaim:
    """A training-time comparison GLAI / MLP in one cell: the summary of 100 * log(ratio) per seed."""

    claim: str
    cell: str
    summary: stats.PairedSummary
    left_out: int  # pairs where a run never reached the target
    p_holm: float

    @property
    def verdict(self) -> str:
        if self.p_holm < stats.ALPHA:
            return "GLAI faster" if self.summary.mean < 0 else "GLAI slower"
        return "no significant difference"

    def ratio(self, x: float) -> str:
        return "–" if not np.isfinite(x) else f"{math.exp(x / 100):.2f}"


def time_claims(pairs) -> list[TimeClaim]:
    rows = time_rows(pairs)
    adjusted = stats.holm([s.p for _, _, s, _ in rows])
    return [TimeClaim(claim, size, s, left_out, p) for (claim, size, s, left_out), p in zip(rows, adjusted)]


def time_table(claims: list[TimeClaim]) -> list[str]:
    lines = ["| GLAI / MLP (plain, equal params) | training set | runs | ratio | 95% CI | p (Holm) | verdict |",
             "|" + " --- |" * 7]
    for c in claims:
        s = c.summary
        runs = f"{s.n}" + (f" ({c.left_out} never reached it)" if c.left_out else "")
        ci = "–" if s.n < 2 else f"{c.ratio(s.ci_low)} to {c.ratio(s.ci_high)}"
        lines.append(f"| {c.claim} | {c.cell} | {runs} | {c.ratio(s.mean)} | {ci} | {_p(c.p_holm)} | **{c.verdict}** |")
    return lines


def structure_lines(pairs, threshold: float) -> list[str]:
    lines = ["| training set | GLAI level | froze at epoch (median, range) | of epochs | froze by the flip threshold | "
             "test acc at the freeze → last (pts) |", "|" + " --- |" * 6]
    for size, g, _ in pairs:
        kinds = {f"SAL level {k}": (lambda r, k=k: r["sal"][k - 1]) for k in range(1, len(g["runs"][0]["sal"]) + 1)}
        kinds["plain (epoch-matched)"] = lambda r: r["plain_epoch_matched"]
        for name, pick in kinds.items():
            records = [pick(r) for r in g["runs"]]
            frozen = [[row for row in rec["history"] if "structure_flips" in row] for rec in records]
            epochs = np.array([len(f) for f in frozen])
            by_threshold = sum(f[-1]["structure_flips"] <= threshold for f in frozen)
            at_freeze = np.mean([freeze_accuracy(rec) for rec in records])
            last = np.mean([rec["final_test_accuracy"] * 100 for rec in records])
            lines.append(f"| {size} | {name} | {np.median(epochs):.0f} ({epochs.min()}–{epochs.max()}) | "
                         f"{len(records[0]['history'])} | {by_threshold} of {len(records)} | "
                         f"{at_freeze:.1f} → {last:.1f} |")
    return lines


def freeze_accuracy(record: dict[str, Any]) -> float:
    """Test accuracy (points) at the epoch a GLAI level's structure froze (its structure phase's last)."""
    frozen = [row for row in record["history"] if "structure_flips" in row]
    return record["history"][len(frozen) - 1]["test_accuracy"] * 100


def structure_claims(pairs, data: dict[str, Any] | None = None) -> list[Claim]:
    """"The structure stabilises before the weights": the plain GLAI level's test accuracy still rises
    after its structure froze (last epoch minus the freeze epoch, per seed; every epoch is evaluated)."""
    rows = []
    for size, g, _ in pairs:
        records = [r["plain_epoch_matched"] for r in g["runs"]]
        last = np.array([rec["final_test_accuracy"] * 100 for rec in records])
        at_freeze = np.array([freeze_accuracy(rec) for rec in records])
        rows.append(("the weights keep learning after the structure froze (plain GLAI)", size,
                     stats.paired_scores(last, at_freeze), context_of(data, g, last, at_freeze)))
    return judged(rows)


def pruning_claims(pruning: dict[str, Any], data: dict[str, Any] | None = None) -> list[Claim]:
    """Pruned minus unpruned plain GLAI per kept fraction; the test set (so its majority class) is the run's."""
    rows = []
    for size, cell in pruning["cells"].items():
        full, params = np.array(cell["accuracy"]["none"]) * 100, cell["params"]
        for name, accuracy in cell["accuracy"].items():
            if name != "none":
                what, keep = name.split()
                pruned = np.array(accuracy) * 100
                rows.append((f"keeping {float(keep):.0%} of the {'hidden units' if what == 'units' else 'value weights'} "
                             "loses nothing", f"{size}; {params[name]:,} of {params['none']:,} params",
                             stats.paired_scores(pruned, full), context_of(data, {}, pruned, full)))
    return judged(rows)


def plots(pairs, folder: str) -> list[str]:
    """Per training-set size: the flip fraction per epoch of plain GLAI, and test accuracy against
    training time of plain GLAI and plain MLP (means over seeds, epoch by epoch)."""
    names = []
    for size, g, m in pairs:
        tag = f"pc{g['per_class']}"
        fig = Figure(figsize=(10, 3.8))
        flips, curves = fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)
        for r in g["runs"]:
            rows = [row for row in r["plain_epoch_matched"]["history"] if "structure_flips" in row]
            flips.plot([row["epoch"] for row in rows], [row["structure_flips"] for row in rows], color="C0", alpha=0.6)
        flips.set(yscale="log", xlabel="epoch", ylabel="fraction of probe gates flipped",
                  title=f"plain GLAI's structure phase, {size}")
        for cell, label, color in ((g, "plain GLAI", "C0"), (m, "plain MLP, equal params", "C1")):
            histories = [r["plain_epoch_matched"]["history"] for r in cell["runs"]]
            time = np.mean([[row["train_time"] for row in h] for h in histories], axis=0)
            accuracy = np.mean([[row["test_accuracy"] * 100 for row in h] for h in histories], axis=0)
            curves.plot(time, accuracy, marker=".", color=color, label=label)
        curves.set(xlabel="training time (s; compilation and evaluation excluded)", ylabel="test accuracy (%)",
                   title="accuracy against training time (mean of seeds)")
        curves.legend()
        fig.tight_layout()
        name = f"glai_{tag}.png"
        fig.savefig(os.path.join(folder, name), dpi=90)
        names.append(name)
    return names


def run_claims(folder: str) -> dict[str, list]:
    """Every judged claim of one glai.py run: {"accuracy": [Claim], "time": [TimeClaim], "pruning": [Claim]}."""
    results = read_results(folder)
    pairs, data = paired_cells(results), results["config"]["data"]
    pruning_path = os.path.join(folder, "pruning.json")
    pruning = []
    if os.path.exists(pruning_path):
        with open(pruning_path) as f:
            pruning = pruning_claims(json.load(f), data)
    return {"accuracy": accuracy_claims(pairs, data) + structure_claims(pairs, data), "time": time_claims(pairs),
            "pruning": pruning}


def summary_lines(runs: list[tuple[str, dict[str, list]]]) -> list[str]:
    """One line per claim over every run and training-set size: its verdicts counted, and the significant
    ones listed (run, size, mean and CI; the first three). `runs`: (run, {kind: claims}), kinds "accuracy", "time" (ratios)
    or "pruning" (verdicts "loses accuracy" / "gains accuracy"), as run_claims gives them."""
    def significant(c) -> bool:
        return c.p_holm < stats.ALPHA

    def shown(run: str, c, mean: str, low: str, high: str) -> str:
        return f"{run} {c.cell.split(' (')[0].split(';')[0]} {mean} ({low} to {high})"

    lines = []
    for kind in dict.fromkeys(kind for _, claims in runs for kind in claims):
        name = (lambda c: c.claim.split(" (")[0]) if kind == "time" else (lambda c: c.baseline)
        words = PRUNING_WORDS if kind == "pruning" else {}
        for label in dict.fromkeys(name(c) for _, claims in runs for c in claims[kind]):
            chosen = [(run, c) for run, claims in runs for c in claims[kind] if name(c) == label]
            counts: dict[str, int] = {}
            for _, c in chosen:
                key = c.verdict if kind == "time" else stats.category(c.verdict)
                key = words.get(key, key)
                counts[key] = counts.get(key, 0) + 1
            estimates = [c.summary.mean for _, c in chosen]
            signs = sign_line(estimates, "> 1", "< 1") if kind == "time" else sign_line(estimates)
            sig = [shown(run, c, f"{c.ratio(c.summary.mean)}x" if kind == "time" else _num(c.summary.mean),
                         c.ratio(c.summary.ci_low) if kind == "time" else _num(c.summary.ci_low),
                         c.ratio(c.summary.ci_high) if kind == "time" else _num(c.summary.ci_high))
                   + f": {words.get(c.verdict, c.verdict)}" for run, c in chosen if significant(c)]
            listed = "; ".join(sig[:3]) + (f"; and {len(sig) - 3} more" if len(sig) > 3 else "")
            lines.append(f"- {label}: " + ", ".join(f"{k} {n}" for k, n in counts.items())
                         + (f" of {len(chosen)}" if counts else "") + f"; {signs}"
                         + (f"; significant: {listed}" if sig else ""))
    return lines


def section(folder: str, link_prefix: str = "") -> list[str]:
    """The markdown of one glai.py run (without its title)."""
    results = read_results(folder)
    pairs, data = paired_cells(results), results["config"]["data"]
    threshold = results["config"]["glai"]["flip_threshold"]
    lines = ["### Accuracy", ""] + claim_rows(accuracy_claims(pairs, data), "difference") + [""]
    lines += ["\"At GLAI's training time\": the MLP's test accuracy at the last epoch it finished within GLAI's "
              "training time (every epoch is evaluated); where GLAI took longer than the MLP's whole run, the "
              "MLP's last epoch, i.e. the MLP had less time (favourable to GLAI).", ""]
    lines += ["### Training time (ratios GLAI / MLP: geometric means over seeds, CI and test on the logs)", ""]
    lines += time_table(time_claims(pairs)) + [""]
    lines += ["### When the structure froze", ""] + structure_lines(pairs, threshold) + [""]
    lines += claim_rows(structure_claims(pairs, data), "last − at the freeze") + [""]
    pruning_path = os.path.join(folder, "pruning.json")
    if os.path.exists(pruning_path):
        with open(pruning_path) as f:
            pruning = json.load(f)
        lines += ["### Path-norm pruning of the plain GLAI level (values only; the structure stays whole)", ""]
        lines += claim_rows(pruning_claims(pruning, data), "pruned − unpruned", PRUNING_WORDS) + [""]
    lines += [f"![GLAI {size}]({link_prefix}{name})" for (size, *_), name in zip(pairs, plots(pairs, folder))]
    return lines


if __name__ == "__main__":
    print("\n".join(section(sys.argv[1])))
