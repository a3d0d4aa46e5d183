"""Kendall τ between each run's average gradient-flow measure and its generalization.

The paper (Tessera et al. 2021) ranks runs by a measure (``gf1``, ``gf2``, ``egf1``, ``egf2``)
averaged over the probe points, and by test loss / test accuracy, and reports Kendall's τ computed
separately over the sparse runs and over the dense runs.

**Sign convention**: every τ is stored with its sign. A measure that rises with test loss has
τ > 0 against ``test_loss`` and, since accuracy usually falls as loss rises, typically τ < 0
against ``test_accuracy``. The paper's table shows |τ|, which :meth:`CorrelationTable.to_markdown`
does by default (``absolute=False`` shows the signs).

τ is scipy's tau-b (ties in either variable are accounted for); its p-value is two-sided (exact
for small samples without ties, asymptotic otherwise). Values are rounded to
:data:`~sparseflow.analysis.stats.RANK_DIGITS` significant digits first, so float noise does not
break a tie. Pure Python + scipy: no torch here.

**Diverged runs are kept**: a target that is a loss (its name ends in ``loss``) and is not
finite (a diverged run's NaN or inf) counts as +inf, the worst loss, so the run ranks last instead
of vanishing; its measures are the averages over the probe points up to divergence (the run
summary leaves a measure's non-finite points out of its average). A measure that is missing or
NaN still drops the run from that cell.

**Within a dense width** (:func:`kendall_by_group`): a τ pooled over runs of several dense widths
also ranks capacities against each other (a wider dense net, and its sparse twin, typically has
both a different gradient flow and a better accuracy), so part of it measures capacity, not
gradient flow. The same table computed separately within each width removes that; comparing the
two shows how much of the pooled τ is capacity.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from scipy import stats

from sparseflow.analysis.stats import rank_rounded

#: Paper labels of the known measures, for markdown tables.
MEASURE_LABELS = {"gf1": "‖g‖₁", "gf2": "‖g‖₂", "egf1": "EGF₁", "egf2": "EGF₂"}


def target_suffix(target: str) -> str:
    """Column suffix of a target: ``test_loss`` → ``loss``, ``test_accuracy`` → ``acc``."""
    short = target.removeprefix("test_")
    return {"accuracy": "acc"}.get(short, short)


@dataclass(frozen=True)
class Cell:
    """One correlation: Kendall's τ (signed) and its p-value over ``n`` runs of one kind."""

    measure: str
    kind: str
    target: str
    tau: float
    p_value: float
    n: int
    note: str = ""


@dataclass(frozen=True)
class CorrelationTable:
    """Kendall τ of every (measure, kind, target), in the order they were requested."""

    measures: tuple[str, ...]
    kinds: tuple[str, ...]
    targets: tuple[str, ...]
    cells: tuple[Cell, ...]

    def cell(self, measure: str, kind: str, target: str) -> Cell:
        """The :class:`Cell` of one (measure, kind, target); KeyError naming the valid ones."""
        for c in self.cells:
            if (c.measure, c.kind, c.target) == (measure, kind, target):
                return c
        raise KeyError(
            f"no cell ({measure!r}, {kind!r}, {target!r}); measures {list(self.measures)}, "
            f"kinds {list(self.kinds)}, targets {list(self.targets)}"
        )

    def columns(self) -> list[str]:
        """Column names ``<kind>_<target>`` in paper order: sparse_loss, sparse_acc, dense_..."""
        return [f"{k}_{target_suffix(t)}" for k in self.kinds for t in self.targets]

    def to_rows(self, absolute: bool = False) -> list[dict[str, Any]]:
        """One row per measure: ``{"measure": m, "sparse_loss": τ, "sparse_acc": τ, ...}``.

        τ is signed unless ``absolute`` (then |τ|, as in the paper); NaN where undefined.
        """
        rows = []
        for m in self.measures:
            row: dict[str, Any] = {"measure": m}
            for k in self.kinds:
                for t in self.targets:
                    tau = self.cell(m, k, t).tau
                    row[f"{k}_{target_suffix(t)}"] = abs(tau) if absolute else tau
            rows.append(row)
        return rows

    def to_records(self) -> list[dict[str, Any]]:
        """Long format, one dict per cell (measure, kind, target, tau, p_value, n, note)."""
        return [asdict(c) for c in self.cells]

    def to_markdown(self, absolute: bool = True, digits: int = 3) -> str:
        """A markdown table in the paper's layout (measures as rows, kind × target as columns).

        ``absolute=True`` shows |τ| like the paper; ``False`` shows signed τ (``+0.355``).
        Undefined cells show ``n/a``; notes on them follow the table.
        """

        def fmt(tau: float) -> str:
            if math.isnan(tau):
                return "n/a"
            return f"{abs(tau):.{digits}f}" if absolute else f"{tau:+.{digits}f}"

        heads = [f"{k.capitalize()}: {target_suffix(t)}" for k in self.kinds for t in self.targets]
        lines = [
            "| Measure | " + " | ".join(heads) + " |",
            "|---|" + "---|" * len(heads),
        ]
        for m in self.measures:
            vals = [fmt(self.cell(m, k, t).tau) for k in self.kinds for t in self.targets]
            lines.append(f"| {MEASURE_LABELS.get(m, m)} | " + " | ".join(vals) + " |")
        notes = sorted({f"{c.kind}/{c.target}/{c.measure}: {c.note}" for c in self.cells if c.note})
        if notes:
            lines += ["", *[f"- {n}" for n in notes]]
        return "\n".join(lines)

    def best(self, kind: str, target: str) -> str:
        """The measure with the largest |τ| for (kind, target); first one listed on a tie.

        Raises ValueError when τ is undefined (NaN) for every measure.
        """
        scored = [(abs(self.cell(m, kind, target).tau), m) for m in self.measures]
        scored = [(a, m) for a, m in scored if not math.isnan(a)]
        if not scored:
            raise ValueError(f"no measure has a defined τ for kind {kind!r}, target {target!r}")
        best = max(a for a, _ in scored)
        return next(m for a, m in scored if a == best)


def run_value(run: Mapping[str, Any], key: str, index: int) -> float | None:
    """``run[key]`` as a float, or None if missing, None or NaN (inf is kept: it ranks); a
    non-finite loss is +inf (the worst, see the module docstring)."""
    raw = run.get(key)
    if raw is None:
        return None
    try:
        value = float(raw)
    except (TypeError, ValueError):
        raise ValueError(f"run {index} has a non-numeric {key!r}: {raw!r}") from None
    if key.endswith("loss") and not math.isfinite(value):
        return math.inf
    return None if math.isnan(value) else value


def _kendall(xs: list[float], ys: list[float]) -> tuple[float, float, str]:
    """(τ_b, p, note); τ = NaN with a note for fewer than 3 pairs or a constant variable."""
    if len(xs) < 3:
        return math.nan, math.nan, f"n={len(xs)} < 3 runs: τ undefined"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # scipy warns on constant input; we note it instead
        res = stats.kendalltau(rank_rounded(xs), rank_rounded(ys))
    tau, p = float(res.statistic), float(res.pvalue)
    note = "a variable is constant: τ undefined" if math.isnan(tau) else ""
    return tau, p, note


def kendall_table(
    runs: Sequence[Mapping[str, Any]],
    measures: Sequence[str] = ("gf1", "gf2", "egf1", "egf2"),
    targets: Sequence[str] = ("test_loss", "test_accuracy"),
    kinds: Sequence[str] = ("sparse", "dense"),
) -> CorrelationTable:
    """Kendall τ of each measure against each target, computed within each kind of run.

    Args:
        runs: one mapping per run (e.g. the rows of ``sparseflow study export``, or
            ``DataFrame.to_dict("records")``) with ``kind`` and the measure and target values.
        measures, targets, kinds: what to correlate; runs of other kinds are ignored.

    For each (measure, kind, target) the runs of that kind where either value is missing, None
    or NaN are dropped (the cell's ``n`` counts the rest); with fewer than 3 runs left τ and p
    are NaN and the cell has a note. See the module docstring for the sign convention.

    Raises:
        ValueError: a run has no ``kind``, or a non-numeric measure/target value.
    """
    for i, run in enumerate(runs):
        if "kind" not in run:
            raise ValueError(f"run {i} has no 'kind' (expected one of {list(kinds)}): {dict(run)}")
    cells = []
    for m in measures:
        for k in kinds:
            of_kind = [(i, r) for i, r in enumerate(runs) if r["kind"] == k]
            for t in targets:
                pairs = [(run_value(r, m, i), run_value(r, t, i)) for i, r in of_kind]
                kept = [(x, y) for x, y in pairs if x is not None and y is not None]
                tau, p, note = _kendall([x for x, _ in kept], [y for _, y in kept])
                cells.append(Cell(m, k, t, tau, p, len(kept), note))
    return CorrelationTable(tuple(measures), tuple(kinds), tuple(targets), tuple(cells))


def kendall_by_group(
    runs: Sequence[Mapping[str, Any]],
    key: str = "dense_width",
    measures: Sequence[str] = ("gf1", "gf2", "egf1", "egf2"),
    targets: Sequence[str] = ("test_loss", "test_accuracy"),
    kinds: Sequence[str] = ("sparse", "dense"),
) -> dict[Any, CorrelationTable]:
    """:func:`kendall_table` computed separately within each value of ``key`` (default: within
    each dense width; see the module docstring), as ``{value: table}`` in ascending order.

    A run without ``key`` (or with None) belongs to no group. Each group's cells follow
    :func:`kendall_table` (n, NaN below 3 runs, notes).

    Raises:
        ValueError: as :func:`kendall_table`, or a ``key`` whose values cannot be ordered.
    """
    groups: dict[Any, list[Mapping[str, Any]]] = {}
    for run in runs:
        value = run.get(key)
        if value is not None:
            groups.setdefault(value, []).append(run)
    try:
        order = sorted(groups)
    except TypeError:
        raise ValueError(f"the values of {key!r} cannot be ordered: {list(groups)}") from None
    return {v: kendall_table(groups[v], measures, targets, kinds) for v in order}
