"""The smallest reachable p-value and the pairs a test needs, against scipy.stats."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from sparseflow.analysis.power import min_p_value, min_pairs
from sparseflow.analysis.stats import MIN_N


def _extreme(n: int, alternative: str) -> np.ndarray:
    """The most extreme paired differences: distinct, all on the side H1 looks at."""
    d = np.arange(1.0, n + 1.0)
    return -d if alternative == "less" else d


@pytest.mark.parametrize("alternative", ["greater", "less", "two-sided"])
@pytest.mark.parametrize("n", [1, 2, 3, 4, 5, 6, 7, 10, 20, 50, 51, 60])
def test_wilcoxon_min_p_is_scipys_p_of_the_most_extreme_data(n: int, alternative: str) -> None:
    # n = 51, 60: past scipy's switch to the normal approximation
    expected = stats.wilcoxon(_extreme(n, alternative), alternative=alternative,
                              zero_method="wilcox", method="auto").pvalue
    assert min_p_value("wilcoxon", n, alternative) == pytest.approx(expected, rel=1e-9)


@pytest.mark.parametrize("alternative", ["greater", "less", "two-sided"])
@pytest.mark.parametrize("n", [1, 2, 3, 4, 8, 9, 12])
def test_mannwhitney_min_p_is_scipys_p_of_separated_groups(n: int, alternative: str) -> None:
    low, high = np.arange(n, dtype=float), np.arange(n, 2.0 * n)
    sparse, dense = (low, high) if alternative == "less" else (high, low)
    expected = stats.mannwhitneyu(sparse, dense, alternative=alternative).pvalue
    assert min_p_value("mannwhitney", n, alternative) == pytest.approx(expected, rel=1e-9)


def test_ttest_reaches_any_alpha_from_two_pairs() -> None:
    # Nearly equal differences: t grows without bound, p → 0.
    d = 1.0 + 1e-9 * np.arange(3)
    assert stats.ttest_1samp(d, 0.0, alternative="greater").pvalue < 1e-6
    assert min_p_value("ttest", 2) == 0.0 and min_p_value("ttest", 1) == 1.0


@pytest.mark.parametrize("alternative", ["greater", "two-sided"])
@pytest.mark.parametrize("alpha", [0.1, 0.05, 0.01, 0.001])
def test_min_pairs_is_the_first_n_whose_extreme_p_reaches_alpha(alpha: float,
                                                                 alternative: str) -> None:
    n = min_pairs("wilcoxon", alpha, alternative)
    p = lambda k: stats.wilcoxon(_extreme(k, alternative),  # noqa: E731
                                 alternative=alternative).pvalue
    assert p(n) <= alpha
    assert n == MIN_N["wilcoxon"] or p(n - 1) > alpha


def test_min_pairs_by_hand() -> None:
    assert min_pairs("wilcoxon", 0.05) == 5  # 1/32 ≤ 0.05 < 1/16
    assert min_pairs("wilcoxon", 0.05, "two-sided") == 6  # 2/64 ≤ 0.05 < 2/32
    assert min_pairs("wilcoxon", 0.01) == 7  # 1/128
    assert min_pairs("wilcoxon", 0.2) == MIN_N["wilcoxon"]  # never below the project's floor
    assert min_pairs("ttest", 1e-6) == MIN_N["ttest"] == 3
    assert min_pairs("mannwhitney", 0.05) == 3  # 1/C(6,3) = 1/20
    assert min_pairs("mannwhitney", 0.01) == 5  # 1/C(10,5) = 1/252; 1/C(8,4) = 1/70 > 0.01
    assert math.comb(10, 5) == 252 and math.comb(8, 4) == 70


@pytest.mark.parametrize("call,needle", [
    (lambda: min_pairs("sign", 0.05), "unknown test"),
    (lambda: min_pairs("wilcoxon", 1.5), "alpha must be in (0, 1)"),
    (lambda: min_pairs("wilcoxon", 0.05, "bigger"), "unknown alternative"),
    (lambda: min_p_value("wilcoxon", -1), "n must be"),
])
def test_bad_arguments(call, needle: str) -> None:
    with pytest.raises(ValueError, match=needle.replace("(", r"\(").replace(")", r"\)")):
        call()
