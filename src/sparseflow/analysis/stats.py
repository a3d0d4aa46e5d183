"""Is sparse better than same-capacity dense? The tests of SC-SDC step 4.

H0: sparse ≤ dense, H1: sparse > dense (``alternative="greater"``, the paper's one-sided test),
where "better" follows the metric: for a metric where lower is better (a loss) H1 is
sparse < dense. ``alternative="less"`` tests H1: sparse worse than dense, ``"two-sided"`` either
direction. Every test is computed on the **better-oriented** values (both samples negated when
lower is better) with scipy's ``alternative`` of the same name, so

- ``mean_diff``, ``ci_low``/``ci_high`` and ``effect_size`` are > 0 exactly when sparse is better;
- ``mean_sparse``/``mean_dense`` stay in the metric's own units (never negated), and so do
  :attr:`TestResult.diff` and its CI (``diff_ci_low``/``diff_ci_high``): sparse − dense, e.g.
  < 0 for an accuracy where dense is ahead, > 0 for a loss where dense is ahead.

Tests (``TESTS``), each oracle-tested against ``scipy.stats``:

- ``wilcoxon`` (default, paired ``sparse[i]`` ↔ ``dense[i]``): signed-rank test on the differences,
  ``zero_method="wilcox"`` (zero differences are dropped before ranking: a tie is no evidence
  either way) and ``method="auto"`` (scipy picks exact / permutation / normal approximation).
  Statistic: T+, the rank sum of the positive differences. Effect size: matched-pairs rank-biserial
  r = (T+ − T−) / (T+ + T−) over the same non-zero differences, in [−1, 1].
- ``ttest`` (paired): ``ttest_rel``; statistic t; effect size Cohen's d_z = mean(d) / sd(d, ddof=1).
- ``mannwhitney`` (unpaired, sizes may differ): ``mannwhitneyu`` with scipy's defaults (continuity
  correction, ``method="auto"``); statistic U of the sparse sample; effect size rank-biserial
  r = 2U / (n_sparse · n_dense) − 1 (chosen over the common-language effect size so that every
  rank test reports an r in [−1, 1]; CL = (r + 1) / 2).

Decisions:

- **Minimum n** (``min_n=None`` → :func:`default_min_n`): the fewest pairs (paired) or runs in
  each group (unpaired) with which the test can reach p ≤ 0.05 at all. One-sided
  (``MIN_N``): wilcoxon 5 pairs (an exact one-sided p is at least 1/2ⁿ: 1/32 at n = 5),
  ttest 3 pairs (2 degrees of freedom), mannwhitney 3 runs in each group (the smallest exact
  p with 3 vs 3 is 1/20 = 0.05). Two-sided (``MIN_N_TWO_SIDED``) the smallest exact p doubles:
  wilcoxon 6 pairs (2/2⁵ = 0.0625 > 0.05, 2/2⁶ = 0.031), mannwhitney 4 in each group
  (2/20 = 0.1 with 3 vs 3, 2/70 = 0.029 with 4 vs 4), ttest unchanged. Below it only the means
  are reported; statistic, p, effect size and CI are NaN and the note says why.
- **All differences zero** (paired; for mannwhitney every value equal): p = 1.0 (no evidence for
  H1 whichever the alternative, which is also what scipy's wilcoxon returns), effect size 0,
  CI [0, 0], with a note.
- **Missing values**: None and NaN drop the pair (paired) or the value (unpaired); ``n_dropped``
  and the note count them. ±inf is kept (a diverged run ranks last/first); a pair where both are
  the same infinity differs by 0. Non-finite values leave the bootstrap CI undefined (NaN, with a
  note). A diverged run's loss reaches here as +inf (see :mod:`sparseflow.analysis.tables`):
  against a finite loss it is a lost pair with the largest |difference|; both diverged is a tie.
- **Ties**: the rank tests (wilcoxon on the differences, mannwhitney on the values) first round
  to :data:`RANK_DIGITS` significant digits, so that float noise does not break an exact tie:
  accuracies are k/N, and ``s − d`` of two pairs with the same count difference can differ in the
  last bit, which would give them different ranks (and the test a wrong p).
- **CI**: bootstrap of the mean difference (better-oriented) with ``scipy.stats.bootstrap``,
  ``method="BCa"`` (second-order accurate, corrects bias and skew); BCa is undefined on degenerate
  data, where it falls back to ``"percentile"`` with a note. Paired tests resample the pairs (the
  differences), the unpaired test resamples each group independently. The resampling generator is
  ``numpy.random.default_rng(seed)``, so results are reproducible. The CI is two-sided (95% by
  default) whatever the alternative of the test.
"""

from __future__ import annotations

import inspect
import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import stats

TESTS = ("wilcoxon", "ttest", "mannwhitney")
CORRECTIONS = ("none", "holm", "bh")
#: H1 of the test, on better-oriented values: sparse better, sparse worse, either.
ALTERNATIVES = ("greater", "less", "two-sided")
#: Default minimum number of pairs (paired) or of runs per group (unpaired) for a one-sided
#: test, and for a two-sided one; see the module docstring and :func:`default_min_n`.
MIN_N = {"wilcoxon": 5, "ttest": 3, "mannwhitney": 3}
MIN_N_TWO_SIDED = {"wilcoxon": 6, "ttest": 3, "mannwhitney": 4}
#: Significant decimal digits kept before ranking (float64 holds 15-17; see "Ties").
RANK_DIGITS = 12
_EFFECT = {"wilcoxon": "rank-biserial", "ttest": "d_z", "mannwhitney": "rank-biserial"}
#: The keyword of scipy.stats.bootstrap's generator: ``rng`` (scipy ≥ 1.15) or ``random_state``.
RNG_KW = "rng" if "rng" in inspect.signature(stats.bootstrap).parameters else "random_state"


def default_min_n(test: str, alternative: str = "greater") -> int:
    """The fewest pairs (paired) or runs per group (unpaired) with which ``test`` can reach
    p ≤ 0.05 under ``alternative`` (see the module docstring)."""
    if test not in TESTS:
        raise ValueError(f"unknown test {test!r}; valid: {list(TESTS)}")
    _check_alternative(alternative)
    return (MIN_N_TWO_SIDED if alternative == "two-sided" else MIN_N)[test]


def _check_alternative(alternative: str) -> None:
    if alternative not in ALTERNATIVES:
        raise ValueError(f"unknown alternative {alternative!r}; valid: {list(ALTERNATIVES)}")


@dataclass(frozen=True)
class TestResult:
    """One sparse-vs-dense comparison; H1 by ``alternative``: ``"greater"`` sparse better than
    dense, ``"less"`` sparse worse, ``"two-sided"`` either.

    ``n`` is the number of pairs kept (paired tests) or the smaller group (unpaired);
    ``n_dropped`` the pairs (paired) or values (unpaired, both groups) dropped for a missing
    value. ``mean_diff``, the CI and the effect size are better-oriented (> 0: sparse better);
    ``mean_sparse``/``mean_dense`` and :attr:`diff` (sparse − dense) with its CI are in the
    metric's units. NaN marks what was not computed, and ``note`` says why (too few pairs,
    values dropped, CI fallback, ...).
    """

    __test__ = False  # not a pytest test class, despite the name

    test: str
    n: int
    n_sparse: int
    n_dense: int
    mean_sparse: float
    mean_dense: float
    mean_diff: float
    ci_low: float
    ci_high: float
    effect_size: float
    effect_name: str
    statistic: float
    p_value: float
    higher_is_better: bool = True
    min_n: int = 0
    note: str = ""
    alternative: str = "greater"
    n_dropped: int = 0

    @property
    def diff(self) -> float:
        """Mean difference sparse − dense in the metric's units (a loss: > 0 when dense is
        ahead); the better-oriented ``mean_diff`` negated for a lower-is-better metric."""
        return self.mean_diff if self.higher_is_better else -self.mean_diff

    @property
    def diff_ci_low(self) -> float:
        """Lower end of the CI of :attr:`diff` (sparse − dense, the metric's units)."""
        return self.ci_low if self.higher_is_better else -self.ci_high

    @property
    def diff_ci_high(self) -> float:
        """Upper end of the CI of :attr:`diff` (sparse − dense, the metric's units)."""
        return self.ci_high if self.higher_is_better else -self.ci_low


def _as_array(values: Sequence[Any], name: str) -> np.ndarray:
    """Values as a float array, None → NaN; ValueError naming the first non-numeric value."""
    out = np.empty(len(values), dtype=float)
    for i, v in enumerate(values):
        try:
            out[i] = math.nan if v is None else float(v)
        except (TypeError, ValueError):
            raise ValueError(f"{name}[{i}] is not a number: {v!r}") from None
    return out


def _mean(x: np.ndarray, axis: int = -1) -> np.ndarray:
    return np.mean(x, axis=axis)


def _mean_diff(x: np.ndarray, y: np.ndarray, axis: int = -1) -> np.ndarray:
    return np.mean(x, axis=axis) - np.mean(y, axis=axis)


def _bootstrap_ci(
    data: tuple[np.ndarray, ...], confidence: float, n_resamples: int, seed: int
) -> tuple[float, float, str]:
    """(low, high, note): BCa CI of the mean (one sample) or difference of means (two samples)."""
    if not all(np.isfinite(x).all() for x in data):
        return math.nan, math.nan, "non-finite values: no CI"
    if any(len(x) < 2 for x in data):
        return math.nan, math.nan, "fewer than 2 values: no CI"
    statistic = _mean if len(data) == 1 else _mean_diff
    if all(np.ptp(x) == 0 for x in data):  # every resample gives the same value
        point = float(statistic(*data))
        return point, point, ""
    for method in ("BCa", "percentile"):
        with warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore")  # DegenerateDataWarning: handled by the fallback
            res = stats.bootstrap(
                data, statistic, n_resamples=n_resamples, confidence_level=confidence,
                method=method, vectorized=True, **{RNG_KW: np.random.default_rng(seed)},
            )  # fmt: skip
        low, high = float(res.confidence_interval.low), float(res.confidence_interval.high)
        if math.isfinite(low) and math.isfinite(high):
            note = "" if method == "BCa" else "BCa undefined (degenerate data): percentile CI"
            return low, high, note
    return math.nan, math.nan, "bootstrap CI undefined"


def rank_rounded(x: np.ndarray) -> np.ndarray:
    """``x`` rounded to :data:`RANK_DIGITS` significant digits (inf, NaN and 0 unchanged): equal
    quantities computed along different float paths become equal again before ranking."""
    return np.array([float(f"{v:.{RANK_DIGITS}g}") for v in np.asarray(x, dtype=float)],
                    dtype=float)


def _rank_biserial_paired(d: np.ndarray) -> float:
    """(T+ − T−) / (T+ + T−) over the non-zero differences, average ranks of |d| for ties."""
    d = d[d != 0]
    if len(d) == 0:
        return 0.0
    ranks = stats.rankdata(np.abs(d))
    t_plus, t_minus = ranks[d > 0].sum(), ranks[d < 0].sum()
    return float((t_plus - t_minus) / (t_plus + t_minus))


def _paired(
    test: str, s: np.ndarray, d: np.ndarray, sign: float, alternative: str
) -> tuple[float, float, float, str]:
    """(statistic, p, effect size, note) of a paired test on the better-oriented values."""
    # Same infinity on both sides (both diverged) is a tie, not inf − inf = NaN.
    with np.errstate(invalid="ignore"):  # inf − inf, replaced by the tie
        diffs = np.where(s == d, 0.0, sign * (s - d))
    if test == "wilcoxon":
        diffs = rank_rounded(diffs)
    if np.all(diffs == 0):
        stat = 0.0 if test == "wilcoxon" else math.nan  # T+ = 0; t = 0/0
        return stat, 1.0, 0.0, "all differences are zero: p = 1"
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")  # precision / small-sample warnings: n is reported
        if test == "wilcoxon":
            res = stats.wilcoxon(diffs, alternative=alternative, zero_method="wilcox",
                                 method="auto")
            effect = _rank_biserial_paired(diffs)
        else:
            res = stats.ttest_rel(sign * s, sign * d, alternative=alternative)
            effect = float(np.mean(diffs) / np.std(diffs, ddof=1))
    note = ""
    if test == "wilcoxon" and np.any(diffs == 0):
        note = f"{int(np.sum(diffs == 0))} zero difference(s) dropped by the signed-rank test"
    if test == "ttest" and np.ptp(diffs) == 0:
        note = "all differences are equal: t and d_z are infinite"
    return float(res.statistic), float(res.pvalue), effect, note


def compare(
    sparse: Sequence[Any],
    dense: Sequence[Any],
    *,
    test: str = "wilcoxon",
    higher_is_better: bool = True,
    confidence: float = 0.95,
    n_resamples: int = 9999,
    seed: int = 0,
    min_n: int | None = None,
    alternative: str = "greater",
) -> TestResult:
    """Test sparse against same-capacity dense; H1 by ``alternative`` (default: sparse better).

    Args:
        sparse, dense: one value per run (None/NaN allowed: dropped). For the paired tests
            (``wilcoxon``, ``ttest``) ``sparse[i]`` is paired with ``dense[i]``.
        test: one of ``TESTS``. higher_is_better: False for a metric like a loss ("better" is
            then lower; computed on negated values). confidence, n_resamples, seed: the
            bootstrap CI of the mean difference. min_n: minimum pairs (paired) or runs per group
            (unpaired) to test at all; None → :func:`default_min_n` of test and alternative.
        alternative: one of ``ALTERNATIVES``: ``"greater"`` H1 sparse better than dense (H0:
            sparse ≤ dense), ``"less"`` H1 sparse worse, ``"two-sided"`` H1 they differ.

    See the module docstring for every decision (zeros, ties, NaN, CI method, effect sizes).

    Raises:
        ValueError: an unknown test or alternative, a non-numeric value, or unequal lengths for
            a paired test.
    """
    default = default_min_n(test, alternative)  # raises on an unknown test or alternative
    min_n = default if min_n is None else min_n
    s, d = _as_array(sparse, "sparse"), _as_array(dense, "dense")
    sign = 1.0 if higher_is_better else -1.0
    notes: list[str] = []
    paired = test != "mannwhitney"
    if paired:
        if len(s) != len(d):
            raise ValueError(f"{test} is paired: got {len(s)} sparse but {len(d)} dense values")
        keep = ~(np.isnan(s) | np.isnan(d))
        if n_drop := int(np.sum(~keep)):
            notes.append(f"dropped {n_drop} pair(s) with a missing value")
        s, d = s[keep], d[keep]
        n = len(s)
    else:
        drop_s, drop_d = int(np.isnan(s).sum()), int(np.isnan(d).sum())
        n_drop = drop_s + drop_d
        if n_drop:
            notes.append(f"dropped {drop_s} sparse and {drop_d} dense missing value(s)")
        s, d = s[~np.isnan(s)], d[~np.isnan(d)]
        n = min(len(s), len(d))
    with np.errstate(all="ignore"):  # inf − inf in the means of diverged runs
        mean_s = float(np.mean(s)) if len(s) else math.nan
        mean_d = float(np.mean(d)) if len(d) else math.nan
    nan = math.nan
    base: dict[str, Any] = dict(
        test=test, n=n, n_sparse=len(s), n_dense=len(d), mean_sparse=mean_s, mean_dense=mean_d,
        mean_diff=sign * (mean_s - mean_d) if n else nan, effect_name=_EFFECT[test],
        higher_is_better=higher_is_better, min_n=min_n, alternative=alternative, n_dropped=n_drop,
    )  # fmt: skip
    if n < min_n:
        what = "pairs" if paired else "runs in a group"
        notes.insert(0, f"too few {what} (n={n} < {min_n})")
        return TestResult(
            **base, ci_low=nan, ci_high=nan, effect_size=nan, statistic=nan, p_value=nan,
            note="; ".join(notes),
        )  # fmt: skip
    if paired:
        stat, p, effect, note = _paired(test, s, d, sign, alternative)
        with np.errstate(invalid="ignore"):
            data: tuple[np.ndarray, ...] = (np.where(s == d, 0.0, sign * (s - d)),)
    else:
        with warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore")
            res = stats.mannwhitneyu(rank_rounded(sign * s), rank_rounded(sign * d),
                                     alternative=alternative)
        stat, p = float(res.statistic), float(res.pvalue)
        effect = 2 * stat / (len(s) * len(d)) - 1
        note = "all values are equal: p = 1" if np.ptp(np.concatenate([s, d])) == 0 else ""
        data = (sign * s, sign * d)
    ci_low, ci_high, ci_note = _bootstrap_ci(data, confidence, n_resamples, seed)
    notes += [x for x in (note, ci_note) if x]
    if math.isnan(p):
        notes.append("p undefined for these values")
    return TestResult(
        **base, ci_low=ci_low, ci_high=ci_high, effect_size=effect, statistic=stat, p_value=p,
        note="; ".join(notes),
    )  # fmt: skip


def correct(p_values: Sequence[float], method: str) -> list[float]:
    """Adjust a family of p-values for multiple comparisons; same order as given.

    ``method``: ``"none"`` (unchanged), ``"holm"`` (Holm–Bonferroni step-down: the i-th smallest
    of m is multiplied by m − i + 1, then made monotone by a running maximum; controls the
    family-wise error rate) or ``"bh"`` (Benjamini–Hochberg step-up: the i-th smallest times m / i,
    then a running minimum from the largest; controls the false discovery rate). Adjusted values
    are capped at 1. NaN p-values (tests not run) stay NaN and do not count in the family size m.

    Raises:
        ValueError: an unknown method or a p-value outside [0, 1].
    """
    if method not in CORRECTIONS:
        raise ValueError(f"unknown correction {method!r}; valid: {list(CORRECTIONS)}")
    p = np.array([math.nan if v is None else float(v) for v in p_values], dtype=float)
    valid = ~np.isnan(p)
    if np.any((p[valid] < 0) | (p[valid] > 1)):
        raise ValueError(f"p-values must lie in [0, 1]: {list(p_values)}")
    q = p[valid]
    m = len(q)
    if method == "none" or m == 0:
        return [float(x) for x in p]
    order = np.argsort(q, kind="stable")
    ranked = q[order]
    if method == "holm":
        adjusted = np.maximum.accumulate(ranked * (m - np.arange(m)))
    else:
        adjusted = np.minimum.accumulate((ranked * m / np.arange(1, m + 1))[::-1])[::-1]
    back = np.empty(m)
    back[order] = np.minimum(adjusted, 1.0)
    p[valid] = back
    return [float(x) for x in p]
