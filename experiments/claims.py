"""What the result makers share (make_results, glai_results, sparse_results): reading a run's results,
judging paired per-seed differences as claims with Holm's correction (sal_jax.stats), and the test set's
majority-class rate that tells an informative cell from one whose models all score below it."""
from __future__ import annotations

import functools
import gzip
import json
import math
import os
import sys
from dataclasses import dataclass, field
from typing import Any

import numpy as np

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
sys.path.insert(0, ROOT)
from sal_jax import stats  # noqa: E402


def read_results(folder: str) -> dict[str, Any] | None:
    """A run's results.json, or its gzipped copy (large studies are committed compressed); None if neither."""
    for name, opener in (("results.json", open), ("results.json.gz", gzip.open)):
        path = os.path.join(folder, name)
        if os.path.exists(path):
            with opener(path, "rt") as f:
                return json.load(f)
    return None


@dataclass(frozen=True)
class CellContext:
    """What a claim's verdict needs beyond the differences: the test set's majority-class rate and the
    mean accuracy of every model the cell compares (points). A cell whose models all score below the
    majority class learned less than "always answer the commonest class": it is no evidence either way."""

    majority: float | None = None  # points; None: unknown (data not found)
    means: tuple[float, ...] = ()

    @property
    def below_majority(self) -> bool:
        return self.majority is not None and bool(self.means) and max(self.means) < self.majority

    def majority_text(self) -> str:
        return "unknown" if self.majority is None else f"{self.majority:.1f}"


UNINFORMATIVE = "uninformative (below the majority class)"


@dataclass(frozen=True)
class Claim:
    """"SAL's bottom model beats `baseline`" in one cell: the paired differences' statistics and verdict."""

    baseline: str
    cell: str
    summary: stats.PairedSummary
    p_holm: float  # Holm-adjusted across the claims of the experiment's table (NaN: no test)
    verdict: str
    context: CellContext = field(default_factory=CellContext)
    p_global: float = math.nan  # Holm-adjusted across every headline claim of RESULTS.md (make_results)
    verdict_global: str = ""
    same_runs_as: str = ""  # where the same runs were counted before (make_results' duplicates)

    @property
    def significant_unadjusted_only(self) -> bool:
        """The unadjusted 95% CI excludes 0 but Holm's correction leaves the claim not significant."""
        s = self.summary
        return s.n > 1 and (s.ci_low > 0 or s.ci_high < 0) and not self.p_holm < stats.ALPHA


def judged(rows: list[tuple[str, str, stats.PairedSummary] | tuple[str, str, stats.PairedSummary, CellContext]]
           ) -> list[Claim]:
    """(baseline, cell, summary[, context]) rows as Claims, their p-values Holm-adjusted together: the rows
    are the family. A row whose models all score below the majority class is "uninformative" (no evidence
    either way) but stays in the family: dropping rows after seeing their accuracies would favour the rest."""
    contexts = [row[3] if len(row) > 3 else CellContext() for row in rows]
    adjusted = stats.holm([row[2].p for row in rows])
    return [Claim(b, c, s, p, judge(s, p, ctx), ctx) for (b, c, s, *_), p, ctx in zip(rows, adjusted, contexts)]


def judge(summary: stats.PairedSummary, p_adjusted: float, context: CellContext) -> str:
    """stats.verdict, unless the cell's models all score below the majority class."""
    if context.below_majority:
        return f"{UNINFORMATIVE[:-1]}, {context.majority:.1f}%)"
    return stats.verdict(summary, p_adjusted)


def counts_as_evidence(claim: Claim) -> bool:
    return stats.category(claim.verdict) != "not evidence"


def _num(x: float, fmt: str = "+.1f") -> str:
    return "–" if np.isnan(x) else ("∞" if np.isinf(x) and x > 0 else "−∞" if np.isinf(x) else format(x, fmt))


def _p(p: float) -> str:
    return "–" if np.isnan(p) else "<0.001" if p < 0.001 else f"{p:.3f}"


def verdict_label(claim: Claim) -> str:
    return claim.verdict + (" †" if claim.significant_unadjusted_only else "")


def size_label(per_class: int, train: int) -> str:
    return f"{per_class}/class ({train:,} ex.)" if per_class else f"full ({train:,} ex.)"


def final(runs: list[dict[str, Any]], method: str) -> np.ndarray:
    """Last-epoch test accuracy (points) per seed of `method`: "sal" (the bottom level) or a baseline kind."""
    records = [r["sal"][-1] if method == "sal" else r[method] for r in runs]
    return np.array([rec["final_test_accuracy"] for rec in records]) * 100


def claim_rows(cl: list[Claim], what: str, words: dict[str, str] | None = None) -> list[str]:
    """A claim table; `words` renames the verdicts "holds" and "reversed" (e.g. for pruning, where the
    question is whether accuracy is lost)."""
    lines = [f"| claim | training set | majority class (%) | seeds | {what} (pts) | 95% CI | d_z | p (Holm) "
             "| verdict |",
             "|" + " --- |" * 9]
    for c in cl:
        s = c.summary
        ci = "–" if s.n < 2 else f"{_num(s.ci_low)} to {_num(s.ci_high)}"
        label = verdict_label(c)
        for word, replacement in (words or {}).items():
            label = label.replace(word, replacement) if label.startswith(word) else label
        lines.append(f"| {c.baseline} | {c.cell} | {c.context.majority_text()} | {s.n} | {_num(s.mean)} | {ci} | "
                     f"{_num(s.d_z, '+.2f')} | {_p(c.p_holm)} | **{label}** |")
    return lines


def sign_line(estimates: list[float], above: str = "> 0", below: str = "< 0") -> str:
    """The direction of every estimate of one claim over its cells, and the two-sided sign test: a
    consistent direction is a finding even where no single cell is significant."""
    signs = stats.sign_test(estimates)
    zero = f", {signs.zero} equal" if signs.zero else ""
    return f"estimates {signs.positive} {above}, {signs.negative} {below}{zero} (sign test p = {_p(signs.p)})"


def context_of(data: dict[str, Any] | None, cell: dict[str, Any], *scores: np.ndarray) -> CellContext:
    """A cell's CellContext: its majority-class rate (None without a data config) and each model's mean."""
    return CellContext(majority_of(data, cell) if data else None, tuple(float(np.mean(s)) for s in scores))


def majority_of(data: dict[str, Any], cell: dict[str, Any]) -> float | None:
    """The cell's test-set majority-class rate (points): its dataset record's "majority" if the run wrote
    one, else computed from the test labels the run's `config.data` names; None if they cannot be read."""
    if cell.get("dataset", {}).get("majority") is not None:
        return 100 * float(cell["dataset"]["majority"])
    key = (data.get("name", ""), data.get("data_dir", "") or "", data.get("path", "") or "",
           int(data.get("subset_seed", 0) or 0))
    return majority_rate(*key)


@functools.cache
def majority_rate(name: str, data_dir: str, path: str, split_seed: int) -> float | None:
    """The share (points) of the commonest class in dataset `name`'s test split, or None if not found.
    The test split does not depend on per_class (sal_jax.data.subsets cuts only the training split)."""
    try:
        labels = test_labels(name, data_dir, path, split_seed)
    except Exception:  # noqa: BLE001 -- any unreadable copy means "unknown", never a crash
        return None
    if labels is None or len(labels) == 0:
        return None
    counts = np.bincount(np.asarray(labels, dtype=np.int64))
    return 100 * float(counts.max()) / float(counts.sum())


SHARED = {"text": "datasets", "images": "tensorflow_datasets"}  # the folders under ../shared (README, Datasets)


def data_dirs(data_dir: str, kind: str) -> list[str]:
    """Where to look: the run's data_dir (relative to the repository root), then ../shared/<folder>."""
    dirs = [data_dir if os.path.isabs(data_dir) else os.path.join(ROOT, data_dir)] if data_dir else []
    return dirs + [os.path.join(ROOT, "..", "shared", SHARED[kind])]


def test_labels(name: str, data_dir: str, path: str, split_seed: int) -> np.ndarray | None:
    """Only the test labels, read as cheaply as each source allows (no images decoded); None if absent."""
    from sal_jax.data.images import IMAGE_DATASETS
    from sal_jax.data.tabular import TABULAR
    from sal_jax.data.text import LABEL_NAMES, _FILES, _parse

    if name == "digits":
        from sal_jax.data.digits import load_digits_dataset
        return load_digits_dataset(split_seed=split_seed).y_test
    if name in TABULAR:
        from sal_jax.data.tabular import load_tabular_dataset
        return load_tabular_dataset(name, split_seed=split_seed).y_test
    if name in LABEL_NAMES:
        found = [d for d in data_dirs(data_dir, "text") if os.path.isfile(os.path.join(d, _FILES[name][1]))]
        return _parse(name, os.path.join(found[0], _FILES[name][1]))[1] if found else None
    if name in IMAGE_DATASETS:
        found = [d for d in data_dirs(data_dir, "images") if os.path.isdir(os.path.join(d, name))]
        return tfds_test_labels(name, found[0]) if found else None
    if name == "npz" or path:
        full = path if os.path.isabs(path) else os.path.join(ROOT, path)
        return np.load(full)["y_test"] if os.path.isfile(full) else None
    return None


def tfds_test_labels(name: str, root: str) -> np.ndarray:
    """A prepared TFDS dataset's test labels, the images left undecoded (0.3 s for MNIST's 10,000)."""
    import tensorflow_datasets as tfds

    source = tfds.data_source(name, split="test", data_dir=root, download=False,
                              decoders={"image": tfds.decode.SkipDecoding()})
    labels = []
    for start in range(0, len(source), 4096):
        labels += [example["label"] for example in source.__getitems__(range(start, min(start + 4096, len(source))))]
    return np.asarray(labels, np.int32)
