"""What the result makers share (make_results, glai_results, sparse_results): reading a run's results,
and judging paired per-seed differences as claims with Holm's correction (sal_jax.stats)."""
from __future__ import annotations

import gzip
import json
import os
import sys
from dataclasses import dataclass
from typing import Any

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
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
class Claim:
    """"SAL's bottom model beats `baseline`" in one cell: the paired differences' statistics and verdict."""

    baseline: str
    cell: str
    summary: stats.PairedSummary
    p_holm: float  # Holm-adjusted across the claims of the experiment's table
    verdict: str

    @property
    def significant_unadjusted_only(self) -> bool:
        """The unadjusted 95% CI excludes 0 but Holm's correction leaves the claim not significant."""
        s = self.summary
        return s.n > 1 and (s.ci_low > 0 or s.ci_high < 0) and not self.p_holm < stats.ALPHA


def judged(rows: list[tuple[str, str, stats.PairedSummary]]) -> list[Claim]:
    """(baseline, cell, summary) rows as Claims, their p-values Holm-adjusted together: the rows are the family."""
    adjusted = stats.holm([s.p for *_, s in rows])
    return [Claim(b, c, s, p, stats.verdict(s, p)) for (b, c, s), p in zip(rows, adjusted)]


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
    lines = [f"| claim | training set | seeds | {what} (pts) | 95% CI | d_z | p (Holm) | verdict |", "|" + " --- |" * 8]
    for c in cl:
        s = c.summary
        ci = "–" if s.n < 2 else f"{_num(s.ci_low)} to {_num(s.ci_high)}"
        label = verdict_label(c)
        for word, replacement in (words or {}).items():
            label = label.replace(word, replacement) if label.startswith(word) else label
        lines.append(f"| {c.baseline} | {c.cell} | {s.n} | {_num(s.mean)} | {ci} | {_num(s.d_z, '+.2f')} | "
                     f"{_p(c.p_holm)} | **{label}** |")
    return lines
