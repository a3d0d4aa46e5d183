"""Is sparse better than same-capacity dense? The one-sided tests of SC-SDC step 4.

H0: sparse ≤ dense, H1: sparse > dense, where "better" follows the metric: for a metric where
lower is better (a loss) H1 is sparse < dense. Every test is computed on the **better-oriented**
values (both samples negated when lower is better) with scipy's ``alternative="greater"``, so

- ``mean_diff``, ``ci_low``/``ci_high`` and ``effect_size`` are > 0 exactly when sparse is better;
- ``mean_sparse``/``mean_dense`` stay in the metric's own units (never negated).

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

- **Minimum n** (``min_n=None`` → ``MIN_N[test]``): wilcoxon 5 pairs (an exact one-sided p is at
  least 1/2ⁿ, so with n < 5 it can never reach 0.05), ttest 3 pairs (2 degrees of freedom),
  mannwhitney 3 runs in each group (the smallest exact p with 3 vs 3 is 1/20 = 0.05). Below it only
  the means are reported; statistic, p, effect size and CI are NaN and the note says why.
- **All differences zero** (paired; for mannwhitney every value equal): p = 1.0 (no evidence for
  H1, which is also what scipy's wilcoxon returns), effect size 0, CI [0, 0], with a note.
- **Missing values**: None and NaN drop the pair (paired) or the value (unpaired); the note counts
  them. ±inf is kept (a diverged run ranks last/first); a pair where both are the same infinity
  differs by 0. Non-finite values leave the bootstrap CI undefined (NaN, with a note). A diverged
  run's loss reaches here as +inf (see :mod:`sparseflow.analysis.tables`): against a finite loss it
  is a lost pair with the largest |difference|; both diverged is a tie.
- **Ties**: the rank tests (wilcoxon on the differences, mannwhitney on the values) first round
  to :data:`RANK_DIGITS` significant digits, so that float noise does not break an exact tie:
  accuracies are k/N, and ``s − d`` of two pairs with the same count difference can differ in the
  last bit, which would give them different ranks (and the test a wrong p).
- **CI**: bootstrap of the mean difference (better-oriented) with ``scipy.stats.bootstrap``,
  ``method="BCa"`` (second-order accurate, corrects bias and skew); BCa is undefined on degenerate
  data, where it falls back to ``"percentile"`` with a note. Paired tests resample the pairs (the
  differences), the unpaired test resamples each group independently. The resampling generator is
  ``numpy.random.default_rng(seed)``, so results are reproducible.
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
#: Default minimum number of pairs (paired) or of runs per group (unpaired); see module docstring.
MIN_N = {"wilcoxon": 5, "ttest": 3, "mannwhitney": 3}
#: Significant decimal digits kept before ranking (float64 holds 15-17; see "Ties").
RANK_DIGITS = 12
_EFFECT = {"wilcoxon": "rank-biserial", "ttest": "d_z", "mannwhitney": "rank-biserial"}
# scipy ≥ 1.15 names the generator argument ``rng``; older releases call it ``random_state``.
_RNG_KW = "rng" if "rng" in inspect.signature(stats.bootstrap).parameters else "random_state"


@dataclass(frozen=True)
class TestResult:
    """One sparse-vs-dense comparison (H0: sparse ≤ dense, H1: sparse better than dense).

    ``n`` is the number of pairs kept (paired tests) or the smaller group (unpaired);
    ``mean_diff``, the CI and the effect size are better-oriented (> 0: sparse better);
    ``mean_sparse``/``mean_dense`` are in the metric's units. NaN marks what was not computed,
    and ``note`` says why (too few pairs, values dropped, CI fallback, ...).
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
                method=method, vectorized=True, **{_RNG_KW: np.random.default_rng(seed)},
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
    test: str, s: np.ndarray, d: np.ndarray, sign: float
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
            res = stats.wilcoxon(diffs, alternative="greater", zero_method="wilcox", method="auto")
            effect = _rank_biserial_paired(diffs)
        else:
            res = stats.ttest_rel(sign * s, sign * d, alternative="greater")
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
) -> TestResult:
    """Test H0: sparse ≤ dense against H1: sparse better than dense (one-sided).

    Args:
        sparse, dense: one value per run (None/NaN allowed: dropped). For the paired tests
            (``wilcoxon``, ``ttest``) ``sparse[i]`` is paired with ``dense[i]``.
        test: one of ``TESTS``. higher_is_better: False for a metric like a loss (H1 is then
            sparse < dense; computed on negated values). confidence, n_resamples, seed: the
            bootstrap CI of the mean difference. min_n: minimum pairs (paired) or runs per group
            (unpaired) to test at all; None → ``MIN_N[test]``.

    See the module docstring for every decision (zeros, ties, NaN, CI method, effect sizes).

    Raises:
        ValueError: an unknown test, a non-numeric value, or unequal lengths for a paired test.
    """
    if test not in TESTS:
        raise ValueError(f"unknown test {test!r}; valid: {list(TESTS)}")
    min_n = MIN_N[test] if min_n is None else min_n
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
        if drop_s or drop_d:
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
        higher_is_better=higher_is_better, min_n=min_n,
    )  # fmt: skip
    if n < min_n:
        what = "pairs" if paired else "runs in a group"
        notes.insert(0, f"too few {what} (n={n} < {min_n})")
        return TestResult(
            **base, ci_low=nan, ci_high=nan, effect_size=nan, statistic=nan, p_value=nan,
            note="; ".join(notes),
        )  # fmt: skip
    if paired:
        stat, p, effect, note = _paired(test, s, d, sign)
        with np.errstate(invalid="ignore"):
            data: tuple[np.ndarray, ...] = (np.where(s == d, 0.0, sign * (s - d)),)
    else:
        with warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore")
            res = stats.mannwhitneyu(rank_rounded(sign * s), rank_rounded(sign * d),
                                     alternative="greater")
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
