"""Does a treatment help sparse nets more than their dense twins? The interaction behind the
paper's finding 1 ("BatchNorm matters more for sparse networks"), tested directly.

A *unit* is one sparse run and its dense twin under a base value of an axis (e.g. variant NR)
together with the same two under a treated value (BN), everything else equal: dense width,
seed and every other swept axis. Its *sparse lift* is metric(sparse, treated) − metric(sparse,
base), its *dense lift* the same for the dense twins. Per row value (e.g. optimizer) and
(base, treated) pair, the sparse and dense lifts of the units are compared as paired samples
with :func:`~sparseflow.analysis.stats.compare` (H1 by default: the sparse lift is larger,
i.e. the treatment helps sparse nets more; for a loss, lowers it more). The p-value table of
sparse against dense asks whether sparse wins under each variant; this asks whether the
treatment changes the gap, which is what "matters more" claims.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from sparseflow.analysis.stats import TestResult, compare, correct
from sparseflow.store.pairing import freeze, sparse_only_axes

#: Run-row keys that identify a unit besides the swept axes.
UNIT_KEYS: tuple[str, ...] = ("dense_width", "seed")


@dataclass(frozen=True)
class LiftCell:
    """One row value × one (base, treated) pair: the mean lifts and the test of their gap."""

    row: Any
    base: Any
    treated: Any
    sparse_lift: float  #: mean over units, in the metric's units (NaN without units)
    dense_lift: float
    result: TestResult  #: sparse lifts against dense lifts, paired by unit
    p_adjusted: float  #: ``result.p_value`` after the table's correction (same without one)


def treated_pairs(values: Sequence[Any], suffix: str = "_BN") -> list[tuple[Any, Any]]:
    """The (X, X + suffix) pairs among ``values``, in their order: NR pairs with BN (NR is the
    absence of every treatment), DA with DA_BN, and so on."""
    names = [str(v) for v in values]
    out = []
    for v in values:
        treated = suffix.removeprefix("_") if str(v) == "NR" else f"{v}{suffix}"
        if treated in names and str(v) != treated:
            out.append((v, values[names.index(treated)]))
    return out


def lift_table(results: Sequence[Mapping[str, Any]], *, rows: str, pairs: Sequence[tuple],
               axes: Sequence[str], axis: str = "variant", metric: str = "test_accuracy",
               test: str = "wilcoxon", alternative: str = "greater",
               correction: str = "none") -> list[LiftCell]:
    """Every row value of ``rows`` × every (base, treated) pair of ``axis``, from exported run
    rows (``kind``, ``status``, the swept ``axes``, ``dense_width``, ``seed``, ``metric``).

    Units are matched on every swept axis but ``rows`` and ``axis``, and on
    :data:`UNIT_KEYS`; a unit needs all four finished runs with a finite metric. A dense twin
    shared across a sparse-only axis (e.g. ``sparsity.masker``: one twin for every mask
    method) serves the unit of every value. ``correction`` adjusts the p-values over all
    cells (``p_adjusted``)."""
    if rows == axis:
        raise ValueError(f"the rows ({rows!r}) cannot be the treated axis")
    keys = [rows, *(a for a in axes if a not in (rows, axis)), *UNIT_KEYS]
    shared = set(sparse_only_axes(results, keys))  # dense twins shared across these
    table = _values(results, axis, metric, keys)
    row_values = list(dict.fromkeys(freeze(r.get(rows)) for r in results
                                    if r.get("kind") == "sparse" and r.get(rows) is not None))
    lower_better = metric.endswith("loss")
    cells = []
    for row in row_values:
        for base, treated in pairs:
            s, d = _lifts(table, keys, shared, row, base, treated)
            res = compare(s, d, test=test, higher_is_better=not lower_better,
                          alternative=alternative)
            cells.append(LiftCell(row, base, treated, _mean(s), _mean(d), res, res.p_value))
    adjusted = correct([c.result.p_value for c in cells], correction)
    return [replace(c, p_adjusted=p) for c, p in zip(cells, adjusted, strict=True)]


def _values(results: Sequence[Mapping[str, Any]], axis: str, metric: str,
            keys: Sequence[str]) -> dict[tuple, float]:
    """(axis value, kind, value of each of ``keys``…) → the metric of each finished run."""
    out = {}
    for r in results:
        value = r.get(metric)
        if r.get("status") != "finished" or value is None:
            continue
        value = float(value)
        if math.isfinite(value):
            out[(r.get(axis), r.get("kind"), *(freeze(r.get(k)) for k in keys))] = value
    return out


def _lifts(table: Mapping[tuple, float], keys: Sequence[str], shared: set[str], row: Any,
           base: Any, treated: Any) -> tuple[list[float], list[float]]:
    """Paired (sparse lifts, dense lifts) over the units with all four runs, in unit order. A
    unit's dense twins are looked up without the sparse-only axes (``shared``)."""
    sparse: dict[tuple, dict[Any, float]] = {}
    for (v, kind, *unit), value in table.items():
        if kind == "sparse" and unit[0] == row and v in (base, treated):
            sparse.setdefault(tuple(unit), {})[v] = value
    s, d = [], []
    for unit, runs in sparse.items():
        twin = tuple(None if k in shared else u for k, u in zip(keys, unit, strict=True))
        dense = [table.get((v, "dense", *twin)) for v in (base, treated)]
        if len(runs) == 2 and None not in dense:
            s.append(runs[treated] - runs[base])
            d.append(dense[1] - dense[0])
    return s, d


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values) if values else math.nan
