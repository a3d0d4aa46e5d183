"""compare() against scipy.stats, effect sizes and corrections against hand computations."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from sparseflow.analysis import MIN_N, TESTS, compare, correct
from sparseflow.analysis import stats as sf_stats

ORACLE = {
    # Differences of values on a 0.1 grid are exact ties once rounded (float noise removed).
    "wilcoxon": lambda s, d, alt: stats.wilcoxon(np.round(s - d, 10), alternative=alt),
    "ttest": lambda s, d, alt: stats.ttest_rel(s, d, alternative=alt),
    "mannwhitney": lambda s, d, alt: stats.mannwhitneyu(s, d, alternative=alt),
}


@pytest.mark.parametrize("test", TESTS)
@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_statistic_and_p_match_scipy_one_sided(test: str, seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = [8, 12, 30, 60][seed]  # exact, permutation (ties, n ≤ 13) and normal-approximation paths
    s, d = rng.normal(0.3, 1, n), rng.normal(0, 1, n)
    if seed % 2:  # ties and zero differences
        s, d = s.round(1), d.round(1)
        d[:2] = s[:2]
    res = compare(s, d, test=test, n_resamples=199)
    ref = ORACLE[test](s, d, "greater")
    assert res.statistic == pytest.approx(float(ref.statistic))
    assert res.p_value == pytest.approx(float(ref.pvalue))
    assert res.n == n and res.mean_diff == pytest.approx(s.mean() - d.mean())
    assert res.mean_sparse == pytest.approx(s.mean()) and res.mean_dense == pytest.approx(d.mean())


@pytest.mark.parametrize("test", TESTS)
def test_lower_is_better_flips_the_alternative(test: str) -> None:
    rng = np.random.default_rng(7)
    dense_loss = rng.uniform(0.5, 0.6, 10)
    sparse_loss = dense_loss - rng.uniform(0.05, 0.2, 10)  # sparse has the lower loss: better
    as_loss = compare(sparse_loss, dense_loss, test=test, higher_is_better=False, n_resamples=199)
    as_gain = compare(sparse_loss, dense_loss, test=test, n_resamples=199)
    assert as_loss.p_value < 0.01 < 0.99 < as_gain.p_value
    ref = ORACLE[test](sparse_loss, dense_loss, "less")
    assert as_loss.p_value == pytest.approx(float(ref.pvalue))
    # Better-oriented: the improvement is positive; the means stay in loss units.
    assert as_loss.mean_diff == pytest.approx(dense_loss.mean() - sparse_loss.mean())
    assert as_loss.mean_diff > 0
    assert as_loss.ci_low > 0 and as_loss.effect_size > 0 > as_gain.effect_size
    assert as_loss.mean_sparse == pytest.approx(sparse_loss.mean())


def test_hand_computed_effect_sizes() -> None:
    # Rank-biserial (paired): d = 1, 2, -3, 4, 5 → ranks of |d| 1..5, T+ = 12, T- = 3 → 9/15.
    s, d = [2, 4, 0, 8, 10], [1, 2, 3, 4, 5]
    res = compare(s, d)
    assert res.effect_size == pytest.approx(0.6) and res.statistic == 12
    assert res.effect_name == "rank-biserial"
    # A zero difference is dropped (zero_method="wilcox"): d = 1, 0, 2, -3, 4, 5 → same r.
    res0 = compare([2, 7, 4, 0, 8, 10], [1, 7, 2, 3, 4, 5])
    assert res0.effect_size == pytest.approx(0.6) and "1 zero difference" in res0.note
    ref = stats.wilcoxon([1, 0, 2, -3, 4, 5], alternative="greater")
    assert res0.p_value == pytest.approx(ref.pvalue)
    # d_z: d = 1, 2, 3 → mean 2, sd 1 → 2.
    assert compare([2, 4, 6], [1, 2, 3], test="ttest").effect_size == pytest.approx(2.0)
    # Mann-Whitney: 3 beats 1, 2 and loses to 3.5; 4 and 5 beat all three → U = 8, r = 16/9 - 1.
    res = compare([3, 4, 5], [1, 2, 3.5], test="mannwhitney")
    assert res.statistic == 8 and res.effect_size == pytest.approx(7 / 9)


def test_confidence_interval_covers_a_clear_cut_difference_and_is_reproducible() -> None:
    rng = np.random.default_rng(3)
    d = rng.normal(0, 1, 40)
    s = d + 2.0 + rng.normal(0, 0.1, 40)  # true mean difference 2
    for test in TESTS:
        a = compare(s, d, test=test, seed=11, n_resamples=999)
        b = compare(s, d, test=test, seed=11, n_resamples=999)
        c = compare(s, d, test=test, seed=12, n_resamples=999)
        assert a.ci_low < 2.0 < a.ci_high and a.ci_low < a.mean_diff < a.ci_high
        assert (a.ci_low, a.ci_high) == (b.ci_low, b.ci_high)
        assert (a.ci_low, a.ci_high) != (c.ci_low, c.ci_high)
    # Paired resampling of the differences is much tighter than resampling groups independently.
    paired, unpaired = (compare(s, d, test=t, n_resamples=999) for t in ("ttest", "mannwhitney"))
    assert paired.ci_high - paired.ci_low < 0.5 < unpaired.ci_high - unpaired.ci_low


def test_constant_differences_get_a_point_interval() -> None:
    # Every resample of constant differences has the same mean: the CI is that point, no fallback.
    res = compare([2, 3, 4, 5, 6], [1, 2, 3, 4, 5])
    assert (res.ci_low, res.ci_high) == (1.0, 1.0) and res.p_value == pytest.approx(1 / 32)
    assert res.note == ""
    res = compare([2, 3, 4, 5, 6, 7], [1, 2, 3, 4, 5, 6], test="ttest")
    assert math.isinf(res.effect_size) and "infinite" in res.note


def test_bca_failure_falls_back_to_percentile(monkeypatch: pytest.MonkeyPatch) -> None:
    real = stats.bootstrap
    methods = []

    def bca_fails(*args, method, **kwargs):  # BCa is NaN on degenerate data; simulate that
        methods.append(method)
        res = real(*args, method=method, **kwargs)
        if method == "BCa":
            res.confidence_interval = type(res.confidence_interval)(math.nan, math.nan)
        return res

    monkeypatch.setattr(sf_stats.stats, "bootstrap", bca_fails)
    s, d = [3.0, 1.0, 4.0, 1.0, 5.0, 9.0], [2.0, 0.0, 1.0, 1.5, 2.0, 6.0]
    res = compare(s, d, n_resamples=499)
    assert methods == ["BCa", "percentile"] and "percentile CI" in res.note
    diffs = np.subtract(s, d)
    rng = {sf_stats.RNG_KW: np.random.default_rng(0)}
    ref = real((diffs,), np.mean, method="percentile", n_resamples=499, **rng)
    assert (res.ci_low, res.ci_high) == pytest.approx(tuple(ref.confidence_interval))


def test_too_few_pairs_gives_nan_with_a_note() -> None:
    assert MIN_N == {"wilcoxon": 5, "ttest": 3, "mannwhitney": 3}
    res = compare([1, 2, 3, 4], [0, 0, 0, 0])
    assert math.isnan(res.p_value) and math.isnan(res.statistic) and math.isnan(res.ci_low)
    assert res.note == "too few pairs (n=4 < 5)" and res.n == 4 and res.mean_diff == 2.5
    assert not math.isnan(compare([1, 2, 3, 4], [0, 0, 0, 0], min_n=4).p_value)
    res = compare([1, 2], [0, 0, 0, 0, 0], test="mannwhitney")
    assert res.note == "too few runs in a group (n=2 < 3)" and (res.n_sparse, res.n_dense) == (2, 5)
    assert math.isnan(compare([1, 2], [0, 0], test="ttest").p_value)


def test_all_zero_differences_give_p_one() -> None:
    for test in TESTS:
        res = compare([0.5] * 6, [0.5] * 6, test=test)
        assert res.p_value == 1.0 and res.effect_size == 0.0 and (res.ci_low, res.ci_high) == (0, 0)
    assert "all differences are zero" in compare([1.0] * 6, [1.0] * 6).note


def test_missing_values_are_dropped_and_counted() -> None:
    s = [1.0, None, 3.0, 4.0, math.nan, 6.0, 7.0, 8.0]
    d = [0.0, 1.0, 2.5, None, 1.0, 5.0, 5.0, 7.5]
    res = compare(s, d, n_resamples=199)
    kept_s, kept_d = np.array([1, 3, 6, 7, 8.0]), np.array([0, 2.5, 5, 5, 7.5])
    assert res.n == 5 and "dropped 3 pair(s)" in res.note
    ref = stats.wilcoxon(kept_s - kept_d, alternative="greater")
    assert res.p_value == pytest.approx(ref.pvalue)
    res = compare(s, d, test="mannwhitney", n_resamples=199)
    assert (res.n_sparse, res.n_dense) == (6, 7) and "dropped 2 sparse and 1 dense" in res.note
    ref = stats.mannwhitneyu([1, 3, 4, 6, 7, 8], [0, 1, 2.5, 1, 5, 5, 7.5], alternative="greater")
    assert res.p_value == pytest.approx(ref.pvalue)


def test_bad_inputs_raise_one_line_errors() -> None:
    with pytest.raises(ValueError, match="paired: got 3 sparse but 2 dense"):
        compare([1, 2, 3], [1, 2])
    with pytest.raises(ValueError, match="unknown test 'anova'.*wilcoxon"):
        compare([1], [1], test="anova")
    with pytest.raises(ValueError, match=r"sparse\[1\] is not a number: 'x'"):
        compare([1, "x"], [1, 2])
    with pytest.raises(ValueError, match="unknown correction"):
        correct([0.1], "bonferroni-ish")
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        correct([1.5], "holm")


def test_holm_and_bh_by_hand() -> None:
    p = [0.01, 0.04, 0.03, 0.005]
    # Holm, m = 4: sorted 0.005·4 = 0.02, 0.01·3 = 0.03, 0.03·2 = 0.06, 0.04·1 → running max 0.06.
    assert correct(p, "holm") == pytest.approx([0.03, 0.06, 0.06, 0.02])
    # BH: 0.005·4/1 = 0.02, 0.01·4/2 = 0.02, 0.03·4/3 = 0.04, 0.04·4/4 = 0.04 (already monotone).
    assert correct(p, "bh") == pytest.approx([0.02, 0.04, 0.04, 0.02])
    assert correct(p, "bh") == pytest.approx(list(stats.false_discovery_control(p, method="bh")))
    # BH step-up: 0.04·2/1 = 0.08 > 0.045·2/2 → the smaller p takes 0.045. Holm caps at 1.
    assert correct([0.04, 0.045], "bh") == pytest.approx([0.045, 0.045])
    assert correct([0.6, 0.7], "holm") == [1.0, 1.0]
    assert correct(p, "none") == p


def test_nan_p_values_stay_nan_and_leave_the_family() -> None:
    p = [0.01, math.nan, 0.04, 0.03, 0.005]
    for method in ("holm", "bh"):
        out = correct(p, method)
        assert math.isnan(out[1])
        assert out[:1] + out[2:] == pytest.approx(correct([0.01, 0.04, 0.03, 0.005], method))
    assert all(math.isnan(x) for x in correct([math.nan, None], "holm"))


def test_random_families_match_scipy_bh_and_holm_definition() -> None:
    rng = np.random.default_rng(5)
    for _ in range(20):
        p = rng.uniform(0, 0.2, rng.integers(1, 15))
        assert correct(p, "bh") == pytest.approx(list(stats.false_discovery_control(p)))
        holm = np.array(correct(p, "holm"))
        order = np.argsort(p)
        m = len(p)
        steps = [min(1.0, max((m - j) * p[order[j]] for j in range(i + 1))) for i in range(m)]
        assert holm[order] == pytest.approx(steps)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.floats(0, 1) | st.just(math.nan), min_size=1, max_size=12))
def test_corrections_never_lower_p_keep_the_order_and_cap_at_one(p: list[float]) -> None:
    valid = [x for x in p if not math.isnan(x)]
    for method in ("holm", "bh"):
        out = correct(p, method)
        assert [math.isnan(x) for x in out] == [math.isnan(x) for x in p]
        kept = [y for y in out if not math.isnan(y)]
        assert all(x <= y + 1e-12 and y <= 1 for x, y in zip(valid, kept, strict=True))
        pairs = sorted(zip(valid, kept, strict=True))
        assert all(a[1] <= b[1] + 1e-12 for a, b in itertools.pairwise(pairs))
    # Holm is never less conservative than BH.
    holm, bh = correct(p, "holm"), correct(p, "bh")
    assert all(h >= b - 1e-12 for h, b in zip(holm, bh, strict=True) if not math.isnan(h))


# Alternatives -----------------------------------------------------------------------------------
#: H1 on better-oriented values → scipy's alternative on the raw sparse − dense of a loss.
_FLIP = {"greater": "less", "less": "greater", "two-sided": "two-sided"}


@pytest.mark.parametrize("test", TESTS)
@pytest.mark.parametrize("alternative", sf_stats.ALTERNATIVES)
@pytest.mark.parametrize("ties", [False, True])
def test_every_alternative_matches_scipy_for_accuracy_and_loss(test: str, alternative: str,
                                                               ties: bool) -> None:
    rng = np.random.default_rng(11 + ties)
    s, d = rng.normal(0.2, 1, 14), rng.normal(0, 1, 14)
    if ties:
        s, d = s.round(1), d.round(1)
        d[:2] = s[:2]
    # Accuracy (higher is better): H1 is scipy's alternative on sparse − dense as given.
    acc = compare(s, d, test=test, alternative=alternative, n_resamples=99)
    ref = ORACLE[test](s, d, alternative)
    assert acc.p_value == pytest.approx(float(ref.pvalue))
    assert acc.statistic == pytest.approx(float(ref.statistic))
    assert acc.alternative == alternative
    # Loss (lower is better): "sparse better" is sparse < dense, so scipy's alternative flips.
    loss = compare(s, d, test=test, alternative=alternative, higher_is_better=False,
                   n_resamples=99)
    ref = ORACLE[test](s, d, _FLIP[alternative])
    assert loss.p_value == pytest.approx(float(ref.pvalue))
    # The same data as an accuracy and as its loss mirror: H1 sparse better of one is H1 sparse
    # worse of the other.
    mirror = compare(s, d, test=test, alternative=_FLIP[alternative], n_resamples=99)
    assert loss.p_value == pytest.approx(mirror.p_value)


@pytest.mark.parametrize("higher_is_better", [True, False])
def test_diff_is_sparse_minus_dense_in_the_metric_units(higher_is_better: bool) -> None:
    rng = np.random.default_rng(4)
    d = rng.uniform(0.5, 0.6, 12)
    s = d - rng.uniform(0.01, 0.05, 12)  # sparse lower: worse accuracy, better loss
    res = compare(s, d, higher_is_better=higher_is_better, n_resamples=999)
    assert res.diff == pytest.approx(np.mean(s - d)) and res.diff < 0
    # Better-oriented mean_diff: < 0 for the accuracy (dense ahead), > 0 for the loss.
    assert (res.mean_diff > 0) == (not higher_is_better)
    # The bootstrap runs on the better-oriented differences: s − d for the accuracy, d − s for
    # the loss, whose CI negated (ends swapped) is the CI of s − d.
    better = s - d if higher_is_better else d - s
    ref = stats.bootstrap((better,), np.mean, n_resamples=999, method="BCa",
                          **{sf_stats.RNG_KW: np.random.default_rng(0)}).confidence_interval
    expected = (ref.low, ref.high) if higher_is_better else (-ref.high, -ref.low)
    assert (res.diff_ci_low, res.diff_ci_high) == pytest.approx(expected)
    assert res.diff_ci_low < res.diff < res.diff_ci_high < 0


def test_minimum_n_follows_the_alternative() -> None:
    assert sf_stats.MIN_N_TWO_SIDED == {"wilcoxon": 6, "ttest": 3, "mannwhitney": 4}
    assert sf_stats.default_min_n("wilcoxon", "less") == 5
    # The rule is the smallest n whose most extreme outcome reaches p ≤ 0.05 (scipy, exact).
    for n, one, two in ((5, 1 / 32, 2 / 32), (6, 1 / 64, 2 / 64)):
        wins = np.arange(1.0, n + 1)
        assert stats.wilcoxon(wins, alternative="greater").pvalue == pytest.approx(one)
        assert stats.wilcoxon(wins, alternative="two-sided").pvalue == pytest.approx(two)
    assert stats.mannwhitneyu([4, 5, 6], [1, 2, 3], alternative="two-sided").pvalue == \
        pytest.approx(0.1)
    assert stats.mannwhitneyu([5, 6, 7, 8], [1, 2, 3, 4], alternative="two-sided").pvalue == \
        pytest.approx(2 / 70)
    five = compare([2, 3, 4, 5, 6.5], [1, 1, 1, 1, 1], alternative="two-sided")
    assert math.isnan(five.p_value) and five.note == "too few pairs (n=5 < 6)"
    assert compare([2, 3, 4, 5, 6.5], [1, 1, 1, 1, 1], alternative="less").p_value == \
        pytest.approx(1.0)
    six = compare([2, 3, 4, 5, 6.5, 8], [1] * 6, alternative="two-sided")
    assert six.p_value == pytest.approx(2 / 64) and six.min_n == 6
    mw = compare([4, 5, 6], [1, 2, 3], test="mannwhitney", alternative="two-sided")
    assert math.isnan(mw.p_value) and "n=3 < 4" in mw.note
    mw = compare([5, 6, 7, 8], [1, 2, 3, 4], test="mannwhitney", alternative="two-sided")
    assert mw.p_value == pytest.approx(2 / 70)
    with pytest.raises(ValueError, match="unknown alternative 'bigger'.*two-sided"):
        compare([1] * 6, [0] * 6, alternative="bigger")


def test_dropped_pairs_and_values_are_counted() -> None:
    res = compare([1.0, None, 3.0, math.nan, 5, 6], [0.0, 1.0, None, 1.0, 4, 5])
    assert (res.n, res.n_dropped) == (3, 3)
    res = compare([1.0, None, 3.0, 4], [0.0, math.nan, math.nan, 1, 2], test="mannwhitney")
    assert (res.n_sparse, res.n_dense, res.n_dropped) == (3, 3, 3)
