"""sal_jax.stats against values worked out by hand (closed forms), plus a cross-check with scipy."""
import math

import numpy as np
import pytest
import scipy.stats

from sal_jax import stats

# Student's t with 2 degrees of freedom has closed forms: F(t) = 1/2 + t / (2 sqrt(t^2 + 2)), so the
# q-quantile is (2q - 1) / sqrt(2 q (1 - q)) and the two-sided p of |t| is 1 - |t| / sqrt(t^2 + 2).
T975_DF2 = 0.95 / math.sqrt(2 * 0.975 * 0.025)


def test_t_quantile_closed_form_matches_scipy():
    assert T975_DF2 == pytest.approx(4.302652729749464, rel=1e-12)
    assert scipy.stats.t.ppf(0.975, 2) == pytest.approx(T975_DF2, rel=1e-12)


def test_paired_summary_golden_1_2_3():
    s = stats.paired_summary([1.0, 2.0, 3.0])
    # mean 2; squared deviations 1 + 0 + 1 = 2, / (n - 1) = 1 -> sd 1; se 1/sqrt(3)
    assert s.n == 3
    assert s.mean == pytest.approx(2.0)
    assert s.sd == pytest.approx(1.0)
    assert s.se == pytest.approx(1 / math.sqrt(3))
    assert s.ci_low == pytest.approx(2 - T975_DF2 / math.sqrt(3))     # -0.48414
    assert s.ci_high == pytest.approx(2 + T975_DF2 / math.sqrt(3))    # 4.48414
    assert s.ci_low == pytest.approx(-0.48414, abs=1e-5)
    assert s.d_z == pytest.approx(2.0)
    # t = 2 / (1/sqrt(3)) = 2 sqrt(3); p = 1 - 2 sqrt(3) / sqrt(12 + 2) = 1 - sqrt(6/7) = 0.07418
    assert s.p == pytest.approx(1 - math.sqrt(6 / 7), rel=1e-10)
    assert s.p == pytest.approx(0.074180, abs=1e-6)


def test_paired_summary_golden_negative_and_n2():
    # d = [-1, -3]: mean -2, sd sqrt(((1)^2 + (-1)^2) / 1) = sqrt(2), se = 1, df = 1:
    # t(0.975, 1) = tan(pi * 0.475) = 12.7062, t = -2, p = 1 - (2/pi) atan(2) = 0.29517
    s = stats.paired_summary([-1.0, -3.0])
    t975_df1 = math.tan(math.pi * 0.475)
    assert (s.n, s.mean, s.se) == (2, pytest.approx(-2.0), pytest.approx(1.0))
    assert s.sd == pytest.approx(math.sqrt(2))
    assert s.d_z == pytest.approx(-2 / math.sqrt(2))
    assert (s.ci_low, s.ci_high) == (pytest.approx(-2 - t975_df1), pytest.approx(-2 + t975_df1))
    assert s.p == pytest.approx(1 - 2 / math.pi * math.atan(2), rel=1e-10)


def test_paired_summary_matches_scipy_ttest_rel():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=7), rng.normal(size=7)
    s = stats.paired_summary(a - b)
    ref = scipy.stats.ttest_rel(a, b)
    assert s.p == pytest.approx(ref.pvalue, rel=1e-10)
    ci = ref.confidence_interval(0.95)
    assert (s.ci_low, s.ci_high) == (pytest.approx(ci.low), pytest.approx(ci.high))


def test_paired_summary_degenerate():
    one = stats.paired_summary([1.5])
    assert one.n == 1 and one.mean == 1.5
    assert all(math.isnan(v) for v in (one.sd, one.se, one.ci_low, one.ci_high, one.d_z, one.p))
    same = stats.paired_summary([2.0, 2.0, 2.0])
    assert (same.sd, same.ci_low, same.ci_high, same.d_z, same.p) == (0.0, 2.0, 2.0, math.inf, 0.0)
    zero = stats.paired_summary([0.0, 0.0])
    assert zero.p == 1.0 and math.isnan(zero.d_z)
    with pytest.raises(ValueError):
        stats.paired_summary([])
    with pytest.raises(ValueError):
        stats.paired_summary([1.0, float("nan")])


def test_holm_golden():
    # p = [0.01, 0.04, 0.03], m = 3. Ascending: 0.01 (#0), 0.03 (#2), 0.04 (#1), times 3, 2, 1:
    # 0.03, 0.06, 0.04; running max: 0.03, 0.06, 0.06; back in input order: #0 0.03, #1 0.06, #2 0.06.
    assert stats.holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    # Capped at 1: 0.6 * 2 = 1.2 -> 1, then max(1, 0.7) = 1.
    assert stats.holm([0.6, 0.7]) == [1.0, 1.0]
    # Not reordered: ascending 0.2 (#1) * 2 = 0.4, 0.7 (#0) * 1 = 0.7.
    assert stats.holm([0.7, 0.2]) == pytest.approx([0.7, 0.4])
    # Ties: 0.02 * 2 = 0.04, then max(0.04, 0.02 * 1) = 0.04.
    assert stats.holm([0.02, 0.02]) == pytest.approx([0.04, 0.04])
    assert stats.holm([0.3]) == [0.3] and stats.holm([]) == []


def test_holm_nan_is_not_counted():
    # m = 2 (the NaN is a comparison without a test): 0.01 * 2 = 0.02, max(0.02, 0.04 * 1) = 0.04.
    out = stats.holm([0.04, float("nan"), 0.01])
    assert math.isnan(out[1]) and out[0] == pytest.approx(0.04) and out[2] == pytest.approx(0.02)
    with pytest.raises(ValueError):
        stats.holm([1.2])


def test_holm_is_monotone_and_at_least_the_raw_p():
    p = np.random.default_rng(1).uniform(size=20) ** 3
    adj = np.array(stats.holm(p))
    order = np.argsort(p)
    assert np.all(np.diff(adj[order]) >= 0) and np.all(adj >= p) and np.all(adj <= 1)


def summary(mean, low, high, n=3, p=0.5):
    return stats.PairedSummary(n, mean, 1.0, 1.0, low, high, mean, p)


def test_verdict_branches():
    assert stats.verdict(summary(2.0, 0.5, 3.5, p=0.01)) == "holds"
    assert stats.verdict(summary(-2.0, -3.5, -0.5, p=0.01)) == "reversed"
    # Significant unadjusted, not after Holm: the adjusted p decides.
    assert stats.verdict(summary(2.0, 0.5, 3.5, p=0.01), p_adjusted=0.06) == "inconclusive (CI from +0.5 to +3.5)"
    assert stats.verdict(summary(0.1, -0.83, 0.6)) == "no difference larger than 0.9 points"   # rounded up
    assert stats.verdict(summary(0.0, -1.0, 1.0)) == "no difference larger than 1.0 points"    # threshold included
    assert stats.verdict(summary(0.0, -0.3, 0.2)) == "no difference larger than 0.3 points"
    assert stats.verdict(summary(-0.4, -5.12, 4.3)) == "inconclusive (CI from -5.1 to +4.3)"
    assert stats.verdict(summary(0.1, -0.6, 1.05)) == "inconclusive (CI from -0.6 to +1.1)"
    assert stats.verdict(summary(0.1, -0.6, 1.05), threshold=2.0) == "no difference larger than 1.1 points"
    assert stats.verdict(stats.paired_summary([3.0])) == "inconclusive (one seed)"


def test_verdict_from_data_end_to_end():
    # d = [1, 2, 3]: p = 0.0742 > 0.05, CI (-0.48, 4.48) is wider than 1 point.
    assert stats.verdict(stats.paired_summary([1.0, 2.0, 3.0])) == "inconclusive (CI from -0.5 to +4.5)"
    # d = [1, 1.1, 0.9] * 10: t = 10 / (1/sqrt(3)) = 17.3 with 2 df, p = 1 - 17.32 / sqrt(302) = 0.0033.
    s = stats.paired_summary([10.0, 11.0, 9.0])
    assert s.p == pytest.approx(1 - math.sqrt(300 / 302), rel=1e-9)
    assert stats.verdict(s) == "holds" and stats.verdict(s, p_adjusted=min(1.0, 3 * s.p)) == "holds"
    assert stats.verdict(stats.paired_summary([-10.0, -11.0, -9.0])) == "reversed"
    # d = [0.1, -0.1, 0, 0.05, -0.05]: mean 0, sd sqrt(0.025 / 4) = 0.079, se 0.035, t(0.975, 4) = 2.776:
    # CI +-0.098, rounded up to 0.1.
    assert stats.verdict(stats.paired_summary([0.1, -0.1, 0.0, 0.05, -0.05])) == "no difference larger than 0.1 points"
