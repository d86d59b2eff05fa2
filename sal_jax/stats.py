"""Paired comparisons over seeds: confidence interval, effect size, Holm's correction and a verdict.

Pure functions (numpy and scipy's t distribution only), used by `experiments/make_results.py` and
usable from research code. The input is one paired difference per seed, d_i = a_i - b_i (e.g. SAL's
last-epoch test accuracy minus a plain baseline's, in accuracy points, where both runs of a seed share
initial weights and batch order).

For n differences d_1..d_n (`paired_summary`):

    mean  = (1/n) sum_i d_i
    sd    = sqrt( sum_i (d_i - mean)^2 / (n - 1) )            (sample standard deviation)
    se    = sd / sqrt(n)                                      (standard error of the mean)
    CI    = mean -/+ t(1 - alpha/2, n - 1) * se               (95% CI for alpha = 0.05)
    d_z   = mean / sd                                         (Cohen's d_z, the paired effect size)
    t     = mean / se,  p = 2 * P(T_{n-1} >= |t|)             (two-sided paired t-test)

where t(q, k) is the q-quantile of Student's t distribution with k degrees of freedom (from
`scipy.stats.t`). With n < 2 everything but n and the mean is NaN. With sd = 0 (all differences equal)
the CI is the single point `mean`, d_z is +-inf and p is 0, or d_z is NaN and p is 1 when mean = 0.

Holm's step-down correction (`holm`) of m p-values: sort them ascending, p_(1) <= ... <= p_(m); the
adjusted values are

    p~_(i) = min(1, max_{j <= i} (m - j + 1) * p_(j))

returned in the input order. It controls the family-wise error rate at alpha (reject hypothesis i when
p~_i < alpha) under any dependence between the tests, and is uniformly more powerful than Bonferroni.
NaN p-values (comparisons with one seed: no test) stay NaN and do not count in m.

The verdict (`verdict`) uses the Holm-adjusted p-value for significance, and the per-comparison
(unadjusted) 95% CI only to bound the size of a difference that was not significant:

    p~ < alpha and mean > 0                  -> "holds"
    p~ < alpha and mean < 0                  -> "reversed"
    not significant, X = max(|CI low|, |CI high|) <= PRACTICAL_THRESHOLD
                                             -> "no difference larger than X points"
    not significant otherwise                -> "inconclusive (CI from a to b)"
    n < 2                                    -> "inconclusive (one seed)"

(X is rounded up to 0.1 point, so the statement errs on the safe side.) The CI is not widened for
multiplicity (Holm's procedure has no simple matching confidence intervals), so a CI that excludes 0
while p~ >= alpha reads as not significant: the correction is what decides significance, consistently.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import scipy.stats

ALPHA = 0.05
"""Significance level of the (Holm-adjusted) two-sided tests, and 1 - the CIs' confidence level."""

PRACTICAL_THRESHOLD = 1.0
"""Accuracy points below which a difference is taken to be of no practical consequence.

One point is about the seed-to-seed standard deviation of one method's last-epoch test accuracy in
these experiments (0.1-1.8 points over 3 seeds in experiments/RESULTS.md), the tolerance to which a
rerun with new but equivalent code reproduces accuracies, and 5 test examples of TREC's 500. A method
that costs a ladder of extra training to gain less than that is no practical improvement, so a CI
inside +-1 point supports "no (relevant) difference"; a wider CI does not, and reads "inconclusive".
"""


@dataclass(frozen=True)
class PairedSummary:
    """Statistics of paired differences d (see the module docstring for the formulas)."""

    n: int
    mean: float
    sd: float
    se: float
    ci_low: float
    ci_high: float
    d_z: float
    p: float  # two-sided paired t-test, unadjusted
    confidence: float = 1 - ALPHA


def paired_summary(differences: Sequence[float] | np.ndarray, confidence: float = 1 - ALPHA) -> PairedSummary:
    """n, mean, sd, se, the `confidence` t CI of the mean, Cohen's d_z and the paired t-test's p."""
    d = np.asarray(differences, dtype=np.float64).ravel()
    n = int(d.size)
    if n == 0:
        raise ValueError("paired_summary needs at least one difference")
    if not np.all(np.isfinite(d)):
        raise ValueError(f"differences must be finite, got {d.tolist()}")
    mean = float(d.mean())
    nan = float("nan")
    if n < 2:
        return PairedSummary(n, mean, nan, nan, nan, nan, nan, nan, confidence)
    sd = float(d.std(ddof=1))
    se = sd / math.sqrt(n)
    half = float(scipy.stats.t.ppf(0.5 + confidence / 2, n - 1)) * se
    if sd > 0:
        d_z = mean / sd
        p = float(2 * scipy.stats.t.sf(abs(mean / se), n - 1))
    else:
        d_z = math.copysign(math.inf, mean) if mean != 0 else nan
        p = 0.0 if mean != 0 else 1.0
    return PairedSummary(n, mean, sd, se, mean - half, mean + half, d_z, p, confidence)


def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm's step-down adjusted p-values, in the input order: monotone in p, capped at 1; NaN stays NaN."""
    p = np.asarray(pvalues, dtype=np.float64).ravel()
    if np.any((p < 0) | (p > 1)):
        raise ValueError(f"p-values must lie in [0, 1], got {p.tolist()}")
    adjusted = np.full(p.shape, np.nan)
    valid = np.flatnonzero(~np.isnan(p))
    m = valid.size
    order = valid[np.argsort(p[valid], kind="stable")]
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p[i]))
        adjusted[i] = running
    return adjusted.tolist()


def _round_up(x: float, decimals: int = 1) -> float:
    scale = 10 ** decimals
    return math.ceil(round(x * scale, 9)) / scale


def verdict(summary: PairedSummary, p_adjusted: float | None = None, alpha: float = ALPHA,
            threshold: float = PRACTICAL_THRESHOLD) -> str:
    """The claim "mean difference > 0" judged from its (Holm-adjusted) p and CI; see the module docstring.

    `p_adjusted` is the comparison's p-value after Holm's correction across its family (`holm`);
    None uses the summary's own p (a family of one).
    """
    if summary.n < 2:
        return "inconclusive (one seed)"
    p = summary.p if p_adjusted is None else p_adjusted
    if p < alpha:
        return "holds" if summary.mean > 0 else "reversed"
    x = max(abs(summary.ci_low), abs(summary.ci_high))
    if x <= threshold:
        return f"no difference larger than {_round_up(x):.1f} points"
    return f"inconclusive (CI from {summary.ci_low:+.1f} to {summary.ci_high:+.1f})"
