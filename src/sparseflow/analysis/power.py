"""Can a table cell's test reach the significance level at all? The smallest p-value a test can
give with n pairs, and the n it needs for a given α.

The smallest p comes from the most extreme data a cell can hold: every sparse run better than
its dense partner, by distinct margins (no ties, no zeros). The values are the ones
``scipy.stats`` computes with the options :mod:`sparseflow.analysis.stats` uses:

- ``wilcoxon`` (signed-rank, ``method="auto"``): exact for n ≤ 50, where the one-sided p is at
  least 1/2ⁿ (all 2ⁿ sign patterns are equally likely under H0 and one of them is the most
  extreme) and the two-sided p at least 2/2ⁿ; beyond, the normal approximation without
  continuity correction.
- ``ttest`` (paired): t grows without bound as the differences become equal, so with n ≥ 2
  any α is within reach; the project still tests only from ``MIN_N["ttest"]`` pairs
  (2 degrees of freedom).
- ``mannwhitney`` (n runs per group): exact unless both groups exceed 8 runs, where the one-sided
  p is at least 1 / C(2n, n) (two-sided: twice that); beyond, the normal approximation with
  continuity correction.

No test counts below ``MIN_N[test]`` (the statistics module reports no p there), so
:func:`min_pairs` is never below it either.
"""

from __future__ import annotations

import math

from scipy.stats import norm

from sparseflow.analysis.stats import MIN_N, TESTS

ALTERNATIVES = ("greater", "less", "two-sided")
#: scipy's ``method="auto"`` switches to the normal approximation above these sizes.
_WILCOXON_EXACT_MAX_N = 50
_MWU_EXACT_MAX_N = 8
#: Where :func:`min_pairs` stops looking (an α no realistic study can reach).
_MAX_SEARCH_N = 10_000


def _check(test: str, alternative: str) -> None:
    if test not in TESTS:
        raise ValueError(f"unknown test {test!r}; valid: {list(TESTS)}")
    if alternative not in ALTERNATIVES:
        raise ValueError(f"unknown alternative {alternative!r}; valid: {list(ALTERNATIVES)}")


def _sides(z: float, alternative: str) -> float:
    """p of a standard normal z in the direction of the data (the most extreme data always
    points the way the alternative looks, so one-sided 'less' equals 'greater')."""
    p = float(norm.sf(z))
    return min(1.0, 2.0 * p) if alternative == "two-sided" else p


def min_p_value(test: str, n: int, alternative: str = "greater") -> float:
    """The smallest p-value ``test`` can give with ``n`` pairs (``mannwhitney``: ``n`` runs in
    each group), reached by the most extreme data; 1.0 when the test is undefined at ``n``.

    Raises:
        ValueError: an unknown test or alternative, or a negative n.
    """
    _check(test, alternative)
    if n < 0:
        raise ValueError(f"n must be ≥ 0, got {n}")
    if test == "ttest":
        return 0.0 if n >= 2 else 1.0  # equal differences: t = ±inf, p = 0
    if n == 0:
        return 1.0
    sides = 2.0 if alternative == "two-sided" else 1.0
    if test == "wilcoxon":
        if n <= _WILCOXON_EXACT_MAX_N:
            return min(1.0, sides * 0.5 ** n)
        t_plus, mean = n * (n + 1) / 2, n * (n + 1) / 4  # every rank on the positive side
        return _sides((t_plus - mean) / math.sqrt(n * (n + 1) * (2 * n + 1) / 24), alternative)
    if n <= _MWU_EXACT_MAX_N:  # mannwhitney, exact: one ordering of the C(2n, n)
        return min(1.0, sides / math.comb(2 * n, n))
    u, mean = n * n, n * n / 2  # every sparse run above every dense run
    return _sides((u - mean - 0.5) / math.sqrt(n * n * (2 * n + 1) / 12), alternative)


def min_pairs(test: str, alpha: float, alternative: str = "greater") -> int:
    """The fewest pairs (``mannwhitney``: runs per group) with which ``test`` can reach
    p ≤ ``alpha``, and never fewer than the project's ``MIN_N[test]``.

    E.g. one-sided Wilcoxon at α = 0.05: 5 (1/2⁵ = 0.031; 1/2⁴ = 0.0625 is too big).

    Raises:
        ValueError: an unknown test or alternative, or α outside (0, 1).
    """
    _check(test, alternative)
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    n = MIN_N[test]
    while min_p_value(test, n, alternative) > alpha:
        n += 1
        if n > _MAX_SEARCH_N:
            raise ValueError(f"{test} needs more than {_MAX_SEARCH_N:,} pairs to reach "
                             f"p ≤ {alpha}")
    return n
