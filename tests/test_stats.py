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
    same = stats.paired_summary([2.0, 2.0, 2.0])  # sd = 0: no test, never p = 0
    assert (same.sd, same.ci_low, same.ci_high) == (0.0, 2.0, 2.0)
    assert math.isnan(same.d_z) and math.isnan(same.p)
    zero = stats.paired_summary([0.0, 0.0])
    assert math.isnan(zero.p) and math.isnan(zero.d_z)
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


def test_no_spread_is_inconclusive_not_a_hold():
    """A constant nonzero difference has sd = 0: p NaN (Holm leaves it out of m), verdict inconclusive,
    whatever p the caller passes (the Holm-adjusted NaN); a constant zero difference likewise."""
    s = stats.paired_summary([0.5, 0.5, 0.5])
    assert stats.verdict(s) == "inconclusive (no spread: every seed differs by +0.5 points)"
    assert stats.verdict(s, p_adjusted=stats.holm([s.p])[0]).startswith("inconclusive (no spread")
    # identical in every seed (e.g. SAL with both λ = 0 and its plain baseline): no difference, without a test
    assert stats.verdict(stats.paired_summary([0.0] * 4)) == "no difference: every seed scores the same with both"
    assert stats.category(stats.verdict(s)) == "inconclusive"
    # In a family with a real test, the NaN does not count in m: 0.01 stays 0.01.
    assert stats.holm([s.p, 0.01])[1] == pytest.approx(0.01)


def test_paired_scores_ceiling_is_no_evidence():
    """Every run of both methods at 100% (sparse wine: 54 of 54): "ceiling", no p, counted as no evidence."""
    s = stats.paired_scores([100.0] * 5, [100.0] * 5)
    assert s.same_score == 100.0 and math.isnan(s.p) and s.mean == 0.0
    assert stats.verdict(s) == "ceiling: every run scores 100.0%"
    assert stats.category(stats.verdict(s)) == "not evidence"
    floor = stats.paired_scores([10.0, 10.0], [10.0, 10.0])
    assert stats.verdict(floor) == "no contrast: every run scores 10.0%"
    # Equal differences but varying scores: not a ceiling, no spread.
    varying = stats.paired_scores([90.0, 95.0, 99.0], [89.0, 94.0, 98.0])
    assert varying.same_score is None and varying.mean == pytest.approx(1.0)
    assert stats.verdict(varying).startswith("inconclusive (no spread: every seed differs by +1.0")
    with pytest.raises(ValueError):
        stats.paired_scores([1.0, 2.0], [1.0])


def test_category():
    assert [stats.category(v) for v in ("holds", "reversed", "no difference larger than 0.4 points",
                                        "inconclusive (CI from -1.0 to +2.0)", "ceiling: every run scores 100.0%",
                                        "uninformative (below the majority class, 34.8%)")] == [
        "holds", "reversed", "no difference", "inconclusive", "not evidence", "not evidence"]


def test_sign_test_golden():
    # 8 of 8 negative: p = 2 * (1/2)^8 = 0.0078125; zeros are dropped from n.
    t = stats.sign_test([-0.1, -2, -0.3, -1, -0.5, -0.2, -4, -0.01, 0.0])
    assert (t.positive, t.negative, t.zero) == (0, 8, 1) and t.p == pytest.approx(2 / 2 ** 8)
    # 1 of 8 positive: P(X <= 1) = 9 / 256, two-sided 18 / 256 = 0.0703.
    assert stats.sign_test([1] + [-1] * 7).p == pytest.approx(18 / 256)
    assert math.isnan(stats.sign_test([0.0, 0.0]).p)


def test_slope_test_golden_and_against_scipy():
    # y = 2x exactly plus +-1 noise at x = 0, 1, 2, 3: y = [1, 1, 5, 5]; x mean 1.5, S_xx = 5,
    # S_xy = (-1.5)(-2) + (-0.5)(-2) + 0.5(2) + 1.5(2) = 8, slope 1.6; residuals (y - 3 - 1.6(x - 1.5)):
    # [0.4, -1.2, 1.2, -0.4], SSE 3.2, s^2 = 1.6, se = sqrt(1.6 / 5) = 0.5657, t = 2.828 with 2 df:
    # p = 1 - t / sqrt(t^2 + 2) = 1 - 2.828 / sqrt(10) = 0.1056.
    s = stats.slope_test([0, 1, 2, 3], [1, 1, 5, 5])
    assert (s.n, s.slope, s.se) == (4, pytest.approx(1.6), pytest.approx(math.sqrt(0.32)))
    assert s.p == pytest.approx(1 - math.sqrt(8) / math.sqrt(10), rel=1e-9)
    assert s.ci_low == pytest.approx(1.6 - T975_DF2 * math.sqrt(0.32))
    rng = np.random.default_rng(2)
    x, y = np.repeat(np.log10([100, 500, 1000, 5000, 60000]), 8), rng.normal(size=40)
    ref = scipy.stats.linregress(x, y)
    got = stats.slope_test(x, y)
    assert (got.slope, got.se, got.p) == (pytest.approx(ref.slope), pytest.approx(ref.stderr), pytest.approx(ref.pvalue))
    assert math.isnan(stats.slope_test([1, 1, 1], [1, 2, 3]).p) and math.isnan(stats.slope_test([1, 2], [1, 2]).slope)


def test_pitman_morgan_against_the_direct_formula():
    """p from the correlation of sums and differences; against the equivalent F form (Pitman 1939):
    t = (F - 1) sqrt(n - 2) / (2 sqrt(F (1 - rho^2))), F = s_a^2 / s_b^2, rho = corr(a, b)."""
    rng = np.random.default_rng(3)
    b = rng.normal(size=8)
    a = 0.5 * b + rng.normal(scale=2.0, size=8)
    v = stats.pitman_morgan(a, b)
    f, rho, n = a.var(ddof=1) / b.var(ddof=1), np.corrcoef(a, b)[0, 1], 8
    t = (f - 1) * math.sqrt(n - 2) / (2 * math.sqrt(f * (1 - rho ** 2)))
    assert v.p == pytest.approx(2 * scipy.stats.t.sf(abs(t), n - 2), rel=1e-9)
    r = scipy.stats.pearsonr(a + b, a - b)  # the same test, as scipy's correlation test
    assert v.p == pytest.approx(r.pvalue, rel=1e-9)
    assert (v.sd_a, v.sd_b, v.ratio) == (pytest.approx(a.std(ddof=1)), pytest.approx(b.std(ddof=1)),
                                         pytest.approx(math.sqrt(f)))
    # The CI inverts the test: at each end, the test of "ratio = end" (sums and differences of a and
    # end * b) has p = alpha exactly.
    for end in (v.ci_low, v.ci_high):
        assert scipy.stats.pearsonr(a + end * b, a - end * b).pvalue == pytest.approx(0.05, rel=1e-6)
    assert v.ci_low < v.ratio < v.ci_high


def test_pitman_morgan_degenerate():
    assert math.isnan(stats.pitman_morgan([1.0, 2.0], [2.0, 1.0]).p)           # n < 3
    flat = stats.pitman_morgan([1.0, 2.0, 4.0], [5.0, 5.0, 5.0])                # an SD of 0: no test, not p = 0
    assert math.isnan(flat.p) and math.isnan(flat.ratio) and flat.sd_b == 0
    with pytest.raises(ValueError):
        stats.pitman_morgan([1.0, 2.0, 3.0], [1.0, 2.0])
