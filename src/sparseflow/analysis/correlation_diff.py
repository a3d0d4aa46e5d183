"""Is one measure's Kendall τ really larger than another's? A paired bootstrap over runs.

The paper's conclusion is an ordering of |τ| values ("EGF correlates better than ‖g‖"), and an
ordering of two numbers computed from the same runs says nothing until its uncertainty is
known. Two τ of the same runs are strongly dependent (the measures are), so their difference is
far more precise than either τ alone: the null standard error of one τ (about
``sqrt(2(2n+5) / (9n(n−1)))``, 0.056 at n = 144) overstates the uncertainty of a difference.

:func:`tau_difference` resamples the runs (each run keeps its two measures and its target
together: ``scipy.stats.bootstrap(..., paired=True)``), recomputes ``|τ_a| − |τ_b|`` on every
resample and reports its BCa confidence interval (percentile where BCa is undefined, with a
note). Values are ranked as in :mod:`sparseflow.analysis.correlation` (rounded to
:data:`~sparseflow.analysis.stats.RANK_DIGITS` significant digits; a non-finite loss is the
worst loss, +inf); a run missing any of the three values is left out. The generator is
``numpy.random.default_rng(seed)``: reproducible.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import stats

from sparseflow.analysis.correlation import MEASURE_LABELS, run_value, target_suffix
from sparseflow.analysis.stats import RNG_KW, rank_rounded

#: The comparisons the paper's conclusion rests on: each EGF against each standard norm.
PAPER_COMPARISONS: tuple[tuple[str, str], ...] = (
    ("egf1", "gf1"), ("egf1", "gf2"), ("egf2", "gf1"), ("egf2", "gf2"),
)


@dataclass(frozen=True)
class TauDifference:
    """``|τ(a, target)| − |τ(b, target)|`` over ``n`` runs of one kind, with its bootstrap CI."""

    a: str
    b: str
    kind: str
    target: str
    diff: float
    low: float
    high: float
    n: int
    note: str = ""

    def excludes_zero(self) -> bool:
        """True when the CI lies entirely on one side of 0 (the ordering is not noise)."""
        return (self.low > 0 or self.high < 0) and not math.isnan(self.low)


def null_tau_se(n: int) -> float:
    """Standard error of Kendall's τ under independence (no ties): sqrt(2(2n+5) / (9n(n−1)))."""
    if n < 2:
        return math.nan
    return math.sqrt(2 * (2 * n + 5) / (9 * n * (n - 1)))


def _abs_tau(x: np.ndarray, y: np.ndarray) -> float:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a constant resample: τ is NaN, the CI says so
        return abs(float(stats.kendalltau(x, y).statistic))


def _columns(runs: Sequence[Mapping[str, Any]], a: str, b: str, kind: str,
             target: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rows = []
    for i, run in enumerate(runs):
        if run.get("kind") != kind:
            continue
        values = (run_value(run, a, i), run_value(run, b, i), run_value(run, target, i))
        if all(v is not None for v in values):
            rows.append(values)
    arr = np.array(rows, dtype=float).reshape(-1, 3)
    return rank_rounded(arr[:, 0]), rank_rounded(arr[:, 1]), rank_rounded(arr[:, 2])


def tau_difference(runs: Sequence[Mapping[str, Any]], a: str, b: str, *, kind: str,
                   target: str, n_resamples: int = 2000, confidence: float = 0.95,
                   seed: int = 0) -> TauDifference:
    """``|τ_a| − |τ_b|`` (Kendall tau-b of measures ``a`` and ``b`` against ``target``, over
    the runs of ``kind``) and its paired-bootstrap CI; see the module docstring.

    Args:
        runs: one mapping per run with ``kind`` and the values (e.g. ``study export`` rows).
        a, b: measure names (e.g. ``"egf2"``, ``"gf1"``). kind: ``"sparse"`` or ``"dense"``.
        target: e.g. ``"test_loss"``. n_resamples, confidence, seed: the bootstrap's.

    Fewer than 3 complete runs give NaN everywhere, with a note.
    """
    xa, xb, y = _columns(runs, a, b, kind, target)
    n = len(y)
    if n < 3:
        return TauDifference(a, b, kind, target, math.nan, math.nan, math.nan, n,
                             f"n={n} < 3 runs: τ undefined")
    diff = _abs_tau(xa, y) - _abs_tau(xb, y)

    def statistic(pa: np.ndarray, pb: np.ndarray, py: np.ndarray) -> float:
        return _abs_tau(pa, py) - _abs_tau(pb, py)

    for method in ("BCa", "percentile"):
        with warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore")  # DegenerateDataWarning: handled by the fallback
            res = stats.bootstrap((xa, xb, y), statistic, paired=True, vectorized=False,
                                  n_resamples=n_resamples, confidence_level=confidence,
                                  method=method, **{RNG_KW: np.random.default_rng(seed)})
        low, high = float(res.confidence_interval.low), float(res.confidence_interval.high)
        if math.isfinite(low) and math.isfinite(high):
            note = "" if method == "BCa" else "BCa undefined: percentile CI"
            return TauDifference(a, b, kind, target, diff, low, high, n, note)
    return TauDifference(a, b, kind, target, diff, math.nan, math.nan, n,
                         "bootstrap CI undefined")


def tau_differences(runs: Sequence[Mapping[str, Any]],
                    comparisons: Sequence[tuple[str, str]] = PAPER_COMPARISONS,
                    kinds: Sequence[str] = ("sparse", "dense"),
                    targets: Sequence[str] = ("test_loss", "test_accuracy"),
                    **bootstrap: Any) -> list[TauDifference]:
    """:func:`tau_difference` for every comparison × kind × target, in that order."""
    return [tau_difference(runs, a, b, kind=k, target=t, **bootstrap)
            for a, b in comparisons for k in kinds for t in targets]


def differences_markdown(diffs: Sequence[TauDifference], digits: int = 3) -> str:
    """A markdown table: one row per comparison (``EGF₂ − ‖g‖₁``), one column per kind ×
    target, each cell ``+0.029 [−0.010, +0.068]``; **bold** where the CI excludes 0."""
    comparisons = list(dict.fromkeys((d.a, d.b) for d in diffs))
    columns = list(dict.fromkeys((d.kind, d.target) for d in diffs))
    by_key = {(d.a, d.b, d.kind, d.target): d for d in diffs}

    def cell(d: TauDifference) -> str:
        if math.isnan(d.diff):
            return "n/a"
        text = f"{d.diff:+.{digits}f} [{d.low:+.{digits}f}, {d.high:+.{digits}f}]"
        return f"**{text}**" if d.excludes_zero() else text

    heads = [f"{k.capitalize()}: {target_suffix(t)}" for k, t in columns]
    lines = ["| |τ| difference | " + " | ".join(heads) + " |", "|---|" + "---|" * len(heads)]
    for a, b in comparisons:
        vals = [cell(by_key[(a, b, k, t)]) for k, t in columns]
        label = f"{MEASURE_LABELS.get(a, a)} − {MEASURE_LABELS.get(b, b)}"
        lines.append(f"| {label} | " + " | ".join(vals) + " |")
    notes = sorted({f"{d.kind}/{d.target}/{d.a}−{d.b}: {d.note}" for d in diffs if d.note})
    return "\n".join(lines + ([""] + [f"- {n}" for n in notes] if notes else []))
