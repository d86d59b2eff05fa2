"""The SET / NPSET claims of issue #15, judged from a sparse.py run (experiments/configs/sparse.py): six
sweep points per training-set size (CLAIMS), or a density run's three (DENSITY_CLAIMS, and its density
ladder level by level), the same seeds and batches.

    python experiments/sparse_results.py RUN_DIR    (prints the section; make_results.py includes it)

Each claim is judged per training-set size on the per-seed paired differences of last-epoch test accuracy
(points; sal_jax.stats: mean, 95% t CI, d_z, paired t-test), Holm-adjusted across the run's table; the
plain bottom levels (epoch-matched: the same epochs and batches) unless the claim names SAL. Also, per
point: the bottom level's parameters (live ones for sparse levels), the hidden units left alive, and the
generalisation gap (training minus test accuracy in the last epoch); and the learning curves. Every
mean ± std is the sample SD (ddof = 1). Each claim row shows the test set's majority-class rate; a cell
where every run of both models scores the same (wine: 100% on all 54 test examples) reads "ceiling" and is
no evidence either way; the summary in RESULTS.md adds a sign test over each claim's cells.
"""
from __future__ import annotations

import functools
import importlib.util
import os
import sys
import types
from typing import Any

import numpy as np
from matplotlib.figure import Figure

sys.path.insert(0, os.path.dirname(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
from claims import Claim, claim_rows, context_of, final, judged, read_results, size_label  # noqa: E402
from sal_jax import stats  # noqa: E402

PLAIN = "plain_epoch_matched"
CLAIMS = [  # (claim, (point, method), (point, method)): the first minus the second
    ("SET beats the dense MLP (full size)", ("set", PLAIN), ("dense", PLAIN)),
    ("NPSET beats the dense MLP (full size)", ("npset", PLAIN), ("dense", PLAIN)),
    ("NPSET beats the dense MLP of its parameter count", ("npset", PLAIN), ("dense_matched", PLAIN)),
    ("rewiring matters: SET beats fixed sparsity", ("set", PLAIN), ("fixed", PLAIN)),
    ("rewiring matters when pruning: NPSET beats pruning without rewiring", ("npset", PLAIN), ("npset_fixed", PLAIN)),
    ("pruning half the neurons loses nothing: NPSET against SET", ("npset", PLAIN), ("set", PLAIN)),
    ("SAL over NPSET levels beats plain NPSET", ("npset", "sal"), ("npset", PLAIN)),
    ("SAL over NPSET levels beats SAL over dense levels", ("npset", "sal"), ("dense", "sal")),
]
DENSITY_CLAIMS = [  # a density run's (experiments/configs/sparse.py: density_<data set>)
    ("SAL over a density ladder beats plain NPSET", ("npset_density", "sal"), ("npset_density", PLAIN)),
    ("SAL over a density ladder beats SAL over dense levels", ("npset_density", "sal"), ("dense", "sal")),
    ("SAL over a density ladder beats SAL over a depth ladder (NPSET levels)", ("npset_density", "sal"),
     ("npset", "sal")),
]


def claims_of(names: tuple[str, ...]) -> list:
    """The claims a run's points answer: the density ladder's, or the six-point comparison's."""
    return DENSITY_CLAIMS if "npset_density" in names else CLAIMS


def point_names(results: dict[str, Any]) -> tuple[str, ...]:
    """The run's point names (experiments/configs/sparse.py), in the order of its config.sweep.points."""
    return sparse_config().point_names(results["config"]["sweep"]["points"])


@functools.cache
def sparse_config() -> types.ModuleType:
    """experiments/configs/sparse.py, loaded from its path as `sparse_config`: imported by its bare name from a
    sys.path entry, it would be the top-level module `sparse`, which another package may be (pydata's sparse
    arrays), and whichever came first would stand in for the other in this process."""
    spec = importlib.util.spec_from_file_location("sparse_config", os.path.join(os.path.dirname(__file__), "configs",
                                                                                "sparse.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def point_cells(results: dict[str, Any]) -> list[tuple[str, dict[str, dict[str, Any]]]]:
    """(size label, {point name: cell}) per training-set size, their seeds checked equal."""
    names = point_names(results)
    listed = [dict(map(tuple, point)) for point in results["config"]["sweep"]["points"]]
    by_size: dict[int, dict[str, dict[str, Any]]] = {}
    for cell in results["cells"]:
        name = names[listed.index(cell["point"])]
        by_size.setdefault(cell["per_class"], {})[name] = cell
    out = []
    for per_class, cells in by_size.items():
        seeds = {tuple(r["seed"] for r in cell["runs"]) for cell in cells.values()}
        if len(seeds) > 1:
            raise ValueError(f"sparse: the points at {per_class}/class ran different seeds")
        out.append((size_label(per_class, next(iter(cells.values()))["dataset"]["train"]), cells))
    return out


def sparse_claims(sizes, data: dict[str, Any] | None = None) -> list[Claim]:
    """Every claim per size; `data` (the run's config.data) gives each cell's majority-class rate."""
    rows = []
    for size, cells in sizes:
        for claim, (a, method_a), (b, method_b) in claims_of(tuple(cells)):
            first, second = final(cells[a]["runs"], method_a), final(cells[b]["runs"], method_b)
            rows.append((claim, size, stats.paired_scores(first, second),
                         context_of(data, cells[a], first, second)))
    return judged(rows)


def point_table(sizes) -> list[str]:
    lines = ["| training set | point | params (bottom, plain) | hidden units alive | test acc, last (%) | "
             "train − test acc, last (pts) |", "|" + " --- |" * 6]
    for size, cells in sizes:
        for name, cell in cells.items():
            records = [r[PLAIN] for r in cell["runs"]]
            params = np.mean([rec["num_params"] for rec in records])
            alive = [rec["history"][-1].get("alive_units") for rec in records]
            alive_text = "all" if alive[0] is None else f"{np.mean(alive):.0f}"
            test = np.array([rec["final_test_accuracy"] for rec in records]) * 100
            gap = np.array([rec["history"][-1]["train_accuracy"] for rec in records]) * 100 - test
            lines.append(f"| {size} | {name} | {params:,.0f} | {alive_text} | {test.mean():.1f} ± {test.std(ddof=1):.1f} | "
                         f"{gap.mean():+.1f} |")
    return lines


def density_table(sizes) -> list[str]:
    """The density ladder level by level: its ε, live parameters, and test accuracy with SAL and plain
    (epoch-matched; config.baselines.every_level): which density is best."""
    lines = ["| training set | level | ε | params (live) | SAL, test acc (%) | plain, test acc (%) |", "|" + " --- |" * 6]
    for size, cells in sizes:
        runs = cells["npset_density"]["runs"]
        epsilons = cells["npset_density"]["point"]["model.epsilons"]
        for index, epsilon in enumerate(epsilons):
            level = index + 1
            sal = np.array([r["sal"][index]["final_test_accuracy"] for r in runs]) * 100
            plain = np.array([(r if level == len(epsilons) else r["plain_levels"][str(level)])[PLAIN]
                              ["final_test_accuracy"] for r in runs]) * 100
            params = np.mean([r["sal"][index]["num_params"] for r in runs])
            lines.append(f"| {size} | {level} | {epsilon:g} | {params:,.0f} | {sal.mean():.1f} ± {sal.std(ddof=1):.1f} | "
                         f"{plain.mean():.1f} ± {plain.std(ddof=1):.1f} |")
    return lines


def curves(sizes, folder: str) -> list[str]:
    """Per training-set size: training and test accuracy per epoch of the plain dense, SET and NPSET
    bottom levels (those the run has; means over seeds): the generalisation gap as the paper plots it."""
    names = []
    for size, cells in sizes:
        per_class = cells["dense"]["per_class"]
        fig = Figure(figsize=(6.5, 4))
        ax = fig.add_subplot(1, 1, 1)
        for name, color in (("dense", "C0"), ("set", "C1"), ("npset", "C2"), ("dense_matched", "C3")):
            if name not in cells:
                continue
            histories = [r[PLAIN]["history"] for r in cells[name]["runs"]]
            epochs = [row["epoch"] for row in histories[0]]
            for key, style in (("train_accuracy", ":"), ("test_accuracy", "-")):
                ax.plot(epochs, np.mean([[row[key] * 100 for row in h] for h in histories], axis=0), style,
                        color=color, label=f"{name}, {key.split('_')[0]}")
        ax.set(xlabel="epoch", ylabel="accuracy (%)", title=f"plain bottom levels, {size}")
        ax.legend(fontsize=7, ncol=2)
        fig.tight_layout()
        name = f"curves_pc{per_class}.png"
        fig.savefig(os.path.join(folder, name), dpi=90)
        names.append(name)
    return names


def run_claims(folder: str) -> list[Claim]:
    results = read_results(folder)
    return sparse_claims(point_cells(results), results["config"]["data"])


def section(folder: str, link_prefix: str = "") -> list[str]:
    """The markdown of one sparse.py run (without its title)."""
    results = read_results(folder)
    sizes = point_cells(results)
    lines = ["### Claims (plain bottom levels, epoch-matched, unless SAL is named)", ""]
    lines += claim_rows(sparse_claims(sizes, results["config"]["data"]), "difference") + [""]
    lines += ["### Per point", ""] + point_table(sizes) + [""]
    if "npset_density" in sizes[0][1]:
        lines += ["### The density ladder, level by level", ""] + density_table(sizes) + [""]
    lines += [f"![learning curves, {size}]({link_prefix}{name})" for (size, _), name in zip(sizes, curves(sizes, folder))]
    return lines


if __name__ == "__main__":
    print("\n".join(section(sys.argv[1])))
