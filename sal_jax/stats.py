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
`scipy.stats.t`). With n < 2 everything but n and the mean is NaN. With sd = 0 (every difference equal)
there is no test: t is undefined (0/0 or x/0), so d_z and p are NaN and the CI is the single point `mean`;
such a comparison reads "inconclusive (no spread: every seed differs by X points)" and never "holds" (a
constant difference of 0.1 points over 3 seeds is no proof of anything). When every run of both methods
scores the same (`paired_scores`: e.g. both at 100% on every seed, a ceiling) the comparison says so
("ceiling: every run scores 100.0%") and is no evidence either way.

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
    every run of both methods scores X       -> "ceiling: every run scores X%" (X = 100) or
                                                "no contrast: every run scores X%"
    sd = 0, every difference equal to X      -> "inconclusive (no spread: every seed differs by X points)"

(X is rounded up to 0.1 point, so the statement errs on the safe side.) The CI is not widened for
multiplicity (Holm's procedure has no simple matching confidence intervals), so a CI that excludes 0
while p~ >= alpha reads as not significant: the correction is what decides significance, consistently.

`category` maps a verdict to the word the summaries count it under: holds, reversed, no difference,
inconclusive, or not evidence (no contrast, or a cell a caller marked "uninformative").

Three further tests, for the seed's other claims and for counts of directions:

- `sign_test`: of k estimates, the number above and below 0 (zeros dropped), two-sided exact binomial
  test of P(> 0) = 1/2 (scipy.stats.binomtest). A consistent direction over independent cells is a
  finding even when no single cell is significant (8 of 8 negative: p = 2 / 2^8 = 0.0078).
- `slope_test` ("larger gains with less data"): ordinary least squares of the per-seed differences y_i
  on x_i = log10(training-set size) over every seed and size, slope b = S_xy / S_xx, residual variance
  s^2 = sum (y_i - a - b x_i)^2 / (n - 2), se(b) = s / sqrt(S_xx), CI b -/+ t(1 - alpha/2, n - 2) se(b),
  p = 2 P(T_{n-2} >= |b / se(b)|). The seeds are treated as independent across sizes (each size is its
  own run), so the test is a plain linear-regression t-test.
- `pitman_morgan` ("smaller spread across seeds"): paired samples a, b (same seeds) have equal
  variances iff their sums and differences are uncorrelated (cov(a + b, a - b) = var a - var b). With r
  the sample correlation of (a + b, a - b), t = r sqrt((n - 2) / (1 - r^2)) has Student's t with n - 2
  degrees of freedom under equal variances (Pitman 1939, Morgan 1939). The CI of the variance ratio
  F = s_a^2 / s_b^2 inverts the same test for a ratio lambda (sums and differences of a and
  sqrt(lambda) b): lambda = F (K -/+ sqrt(K^2 - 1)), K = 1 + 2 (1 - rho^2) t(1 - alpha/2, n - 2)^2 / (n - 2),
  rho the correlation of a and b; the SD ratio's CI is its square root. Needs n >= 3 and both SDs > 0.
"""
from __future__ import annotations

import dataclasses
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
    p: float  # two-sided paired t-test, unadjusted; NaN without a test (n < 2 or sd = 0)
    confidence: float = 1 - ALPHA
    same_score: float | None = None  # the score every run of both methods has (paired_scores), else None


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
    else:  # no spread: no test (never p = 0 from sd = 0)
        d_z = p = nan
    return PairedSummary(n, mean, sd, se, mean - half, mean + half, d_z, p, confidence)


def paired_scores(a: Sequence[float] | np.ndarray, b: Sequence[float] | np.ndarray,
                  confidence: float = 1 - ALPHA) -> PairedSummary:
    """`paired_summary(a - b)` for two methods' scores by seed, noting the score if every run of both has it
    (a ceiling such as 100%: the runs cannot tell the methods apart, whatever the differences say)."""
    a, b = np.asarray(a, dtype=np.float64).ravel(), np.asarray(b, dtype=np.float64).ravel()
    if a.shape != b.shape:
        raise ValueError(f"paired scores need one of each per seed, got {a.size} and {b.size}")
    summary = paired_summary(a - b, confidence)
    both = np.concatenate([a, b])
    if both.size > 2 and np.all(both == both[0]):
        return dataclasses.replace(summary, same_score=float(both[0]))
    return summary


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
    if summary.same_score is not None:
        score = summary.same_score
        return f"{'ceiling' if score >= 100 else 'no contrast'}: every run scores {score:.1f}%"
    if summary.n < 2:
        return "inconclusive (one seed)"
    if summary.sd == 0 and summary.mean == 0:  # the same score with both in every seed: no t-test needed
        return "no difference: every seed scores the same with both"
    if summary.sd == 0:
        return f"inconclusive (no spread: every seed differs by {summary.mean:+.1f} points)"
    p = summary.p if p_adjusted is None else p_adjusted
    if p < alpha:
        return "holds" if summary.mean > 0 else "reversed"
    x = max(abs(summary.ci_low), abs(summary.ci_high))
    if x <= threshold:
        return f"no difference larger than {_round_up(x):.1f} points"
    return f"inconclusive (CI from {summary.ci_low:+.1f} to {summary.ci_high:+.1f})"



def category(verdict_text: str) -> str:
    """The word a summary counts a verdict under: "holds", "reversed", "no difference", "inconclusive" or
    "not evidence" (no contrast between the methods, or a cell its caller marked "uninformative")."""
    for word in ("holds", "reversed", "no difference", "inconclusive"):
        if verdict_text.startswith(word):
            return word
    return "not evidence"


@dataclass(frozen=True)
class SignTest:
    """How many estimates lie above and below 0, and the two-sided exact binomial p of P(> 0) = 1/2."""

    positive: int
    negative: int
    zero: int
    p: float  # NaN with no nonzero estimate


def sign_test(estimates: Sequence[float] | np.ndarray) -> SignTest:
    """Counts the signs of `estimates` (one per independent cell) and tests for a consistent direction."""
    x = np.asarray(estimates, dtype=np.float64).ravel()
    positive, negative = int(np.sum(x > 0)), int(np.sum(x < 0))
    n = positive + negative
    p = float(scipy.stats.binomtest(positive, n, 0.5).pvalue) if n else float("nan")
    return SignTest(positive, negative, int(x.size - n), p)


@dataclass(frozen=True)
class SlopeSummary:
    """Least-squares slope of y on x with its t CI and two-sided p (see the module docstring)."""

    n: int
    slope: float
    se: float
    ci_low: float
    ci_high: float
    p: float  # NaN when n < 3, x has one value, or the fit is exact


def slope_test(x: Sequence[float] | np.ndarray, y: Sequence[float] | np.ndarray,
               confidence: float = 1 - ALPHA) -> SlopeSummary:
    """The slope of y on x (OLS with an intercept), e.g. per-seed gains on log10(training-set size)."""
    x, y = np.asarray(x, dtype=np.float64).ravel(), np.asarray(y, dtype=np.float64).ravel()
    n, nan = int(x.size), float("nan")
    sxx = float(np.sum((x - x.mean()) ** 2)) if n else 0.0
    if n < 3 or sxx == 0:
        return SlopeSummary(n, nan, nan, nan, nan, nan)
    slope = float(np.sum((x - x.mean()) * (y - y.mean())) / sxx)
    residuals = y - y.mean() - slope * (x - x.mean())
    se = math.sqrt(float(np.sum(residuals ** 2)) / (n - 2) / sxx)
    half = float(scipy.stats.t.ppf(0.5 + confidence / 2, n - 2)) * se
    p = float(2 * scipy.stats.t.sf(abs(slope / se), n - 2)) if se > 0 else nan
    return SlopeSummary(n, slope, se, slope - half, slope + half, p)


@dataclass(frozen=True)
class VarianceRatio:
    """Pitman-Morgan comparison of the spreads of paired samples a, b (see the module docstring)."""

    n: int
    sd_a: float  # sample SDs (ddof = 1)
    sd_b: float
    ratio: float  # sd_a / sd_b
    ci_low: float  # of the SD ratio
    ci_high: float
    p: float  # two-sided, equal variances; NaN when n < 3 or an SD is 0


def pitman_morgan(a: Sequence[float] | np.ndarray, b: Sequence[float] | np.ndarray,
                  confidence: float = 1 - ALPHA) -> VarianceRatio:
    """Are a's and b's variances equal, for samples paired by seed? The SD ratio a / b, its CI and p."""
    a, b = np.asarray(a, dtype=np.float64).ravel(), np.asarray(b, dtype=np.float64).ravel()
    if a.shape != b.shape:
        raise ValueError(f"paired samples need one of each per seed, got {a.size} and {b.size}")
    n, nan = int(a.size), float("nan")
    sd_a, sd_b = (float(v.std(ddof=1)) if n > 1 else nan for v in (a, b))
    if n < 3 or not (sd_a > 0 and sd_b > 0):
        ratio = sd_a / sd_b if n > 1 and sd_b > 0 else nan
        return VarianceRatio(n, sd_a, sd_b, ratio, nan, nan, nan)
    f = (sd_a / sd_b) ** 2
    r = float(np.corrcoef(a + b, a - b)[0, 1])
    rho = float(np.corrcoef(a, b)[0, 1])
    p = float(2 * scipy.stats.t.sf(abs(r) * math.sqrt((n - 2) / max(1 - r * r, 1e-300)), n - 2))
    t = float(scipy.stats.t.ppf(0.5 + confidence / 2, n - 2))
    k = 1 + 2 * (1 - rho * rho) * t * t / (n - 2)
    root = math.sqrt(max(k * k - 1, 0.0))
    return VarianceRatio(n, sd_a, sd_b, math.sqrt(f), math.sqrt(f * (k - root)), math.sqrt(f * (k + root)), p)
