"""The paper's p-value table (SC-SDC step 4) from exported run rows.

Each row is one run as ``sparseflow study export`` writes it: ``kind`` (``sparse``|``dense``),
``dense_width``, ``seed``, one key per swept axis named by its dotted config key (``optim.name``,
``optim.lr``, ...), optionally ``variant``, ``status`` and the metrics. A table cell is one
(row value, column value), e.g. (optimizer, regularization variant), and pools every dense width,
seed and value of the axes not shown — as the paper's cells do — while a sparse run is only ever
paired with the dense run of the same width, seed and configuration (every other swept axis).

**Diverged runs** (``diverged`` true, or a non-finite value): in a test of a loss (lower is
better) a finished run's non-finite loss counts as +inf, the worst loss there is, so a diverged
sparse run loses its pair by the largest margin and two diverged runs tie; a run is never dropped
for having diverged. Accuracy tests use the accuracies as measured. Each cell counts its
diverged runs (``diverged_sparse``, ``diverged_dense``), shown in every format of the table.

With a ``select`` rule (a study spec's ``select:``) the table compares only the runs chosen by
validation and each cell counts the chosen values (:mod:`sparseflow.analysis.table_select`).

This module computes; the words (cell texts, caption, verdicts, summary sentences) live in
:mod:`sparseflow.analysis.table_text` and the markdown and console layouts in
:mod:`sparseflow.analysis.table_render`, so every format says the same thing.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from typing import Any

from sparseflow.analysis import table_render as render
from sparseflow.analysis import table_select as sel
from sparseflow.analysis import table_text as text
from sparseflow.analysis.stats import (
    ALTERNATIVES,
    CORRECTIONS,
    TESTS,
    TestResult,
    compare,
    correct,
)
from sparseflow.analysis.table_layout import Layout, _groups, default_axes, layout
from sparseflow.analysis.table_text import cell_text, diverged_text
from sparseflow.store.pairing import PAIR_ON, freeze, match, sparse_only_axes
from sparseflow.store.selection import SelectRule, is_diverged, is_finished

#: The compared sides' names: the paper's table, and a method-vs-baseline table.
SIDES: tuple[str, str] = ("sparse", "dense")
BASELINE_SIDES: tuple[str, str] = ("A", "baseline")

__all__ = ["Pairs", "PValueCell", "PValueTable", "cell_text", "default_axes", "diverged_text",
           "baseline_rows", "is_diverged", "layout", "pair_up", "pvalue_table"]


_freeze = freeze  # the pairing rule's key form (lists → tuples, NaN → None)


#: Runs count when finished; a row without a status (or status None) is taken as finished.
_finished = is_finished


def _metric(row: Mapping[str, Any], metric: str, index: int,
            lower_is_better: bool = False) -> float:
    """``row[metric]`` as a float; NaN when missing or None (compare() drops and counts it).

    With ``lower_is_better`` (a loss) a non-finite value (a diverged run's NaN or inf) is +inf,
    the worst outcome, so that the run is ranked instead of dropped.
    """
    raw = row.get(metric)
    if raw is None:
        return math.nan
    try:
        value = float(raw)
    except (TypeError, ValueError):
        raise ValueError(f"row {index} has a non-numeric {metric!r}: {raw!r}") from None
    if lower_is_better and not math.isfinite(value):
        return math.inf
    return value


@dataclass(frozen=True)
class Pairs:
    """Matched (sparse, dense) metric values; unpacks as ``sparse, dense, keys = pair_up(...)``.

    ``keys[i]`` holds the matched values of ``pair_on + within`` for pair i. Finished runs without
    a partner are ignored and counted in ``unmatched_sparse`` / ``unmatched_dense``.
    """

    sparse: tuple[float, ...]
    dense: tuple[float, ...]
    keys: tuple[tuple[Any, ...], ...]
    unmatched_sparse: int = 0
    unmatched_dense: int = 0

    def __iter__(self) -> Iterator[tuple[Any, ...]]:
        return iter((self.sparse, self.dense, self.keys))


def pair_up(
    rows: Sequence[Mapping[str, Any]],
    metric: str,
    *,
    pair_on: Sequence[str] = PAIR_ON,
    within: Sequence[str] = (),
    lower_is_better: bool = False,
    sparse_only: Sequence[str] | None = None,
) -> Pairs:
    """Pair each finished sparse run with its finished dense twin (the rule of
    :mod:`sparseflow.store.pairing`): the dense run equal to it on ``pair_on + within``,
    leaving out the sparse-only axes (``sparse_only``; default: the axes of ``within`` that no
    dense row carries), so one dense twin can pair with several sparse runs.

    Pairs come in the order of the sparse runs; ``keys[i]`` is the sparse run's values of
    ``pair_on + within``. A missing key reads as None (so runs that both lack it still match).
    Runs of another ``kind`` and unfinished runs are ignored. ``lower_is_better``: the metric is
    a loss, a non-finite value counts as +inf (worst).

    Raises:
        ValueError: a row without ``kind``, a non-numeric metric, or two finished runs of one kind
            with the same key (an axis that tells them apart is missing from ``within``).
    """
    for i, row in enumerate(rows):
        if "kind" not in row:
            raise ValueError(f"row {i} has no 'kind' (expected 'sparse' or 'dense'): {dict(row)}")
    if sparse_only is None:
        sparse_only = sparse_only_axes([r for r in rows if _finished(r)], within)
    found = match(rows, list(within), sparse_only, on=pair_on, keep=_finished)
    if found.clashes:
        kind, i, j, key = found.clashes[0]
        raise ValueError(f"rows {i} and {j} are both finished {kind} runs with {key}: add the "
                         "axis that tells them apart to `within`")
    match_keys = (*pair_on, *within)
    order = sorted(found.twin)
    values = {i: _metric(r, metric, i, lower_is_better) for i, r in enumerate(rows)
              if _finished(r) and r["kind"] in ("sparse", "dense")}
    return Pairs(
        sparse=tuple(values[i] for i in order),
        dense=tuple(values[found.twin[i]] for i in order),
        keys=tuple(tuple(freeze(rows[i].get(k)) for k in match_keys) for i in order),
        unmatched_sparse=found.unmatched_sparse,
        unmatched_dense=found.unmatched_dense,
    )


@dataclass(frozen=True)
class PValueCell:
    """One table cell: the test result, its p-value after the table's correction, significance."""

    row: Any
    col: Any
    result: TestResult
    p_adjusted: float
    significant: bool
    diverged_sparse: int = 0
    diverged_dense: int = 0
    choices: sel.CellChoices | None = None

    @property
    def diverged(self) -> int:
        """Diverged runs (sparse + dense) among the cell's finished runs."""
        return self.diverged_sparse + self.diverged_dense


@dataclass(frozen=True)
class PValueTable:
    """Sparse vs dense per (row value, column value), the paper's layout.

    ``row_axis``/``col_axis`` are the keys the table is laid out by (``pvalue_table``'s
    ``rows``/``cols``), ``row_values``/``col_values`` their values in display order.
    ``alternative`` is H1 of every cell (``"greater"``: sparse better). ``correction`` was
    applied across all cells (the family is the table); ``significant`` and the bold cells use
    the corrected p ≤ ``alpha``. ``axes`` are the swept keys pairs were matched on, besides
    ``dense_width`` and ``seed``; ``confidence`` the level of the cells' bootstrap CIs.
    ``sparse_only``: the axes no dense run carries (a dense twin pairs with every value).
    ``sides`` names the two compared sides in every text (("sparse", "dense"), or ("A",
    "baseline") for a ``baseline`` = (axis, value) table: each row's value against it).
    ``select``: the rule that chose the compared runs (None: every finished run); each cell's
    ``choices`` then counts the values chosen, ``select_incomplete`` the (sparse, dense)
    groups of the whole table that chose nothing.
    """

    metric: str
    row_axis: str
    col_axis: str
    test: str
    correction: str
    alpha: float
    higher_is_better: bool
    row_values: tuple[Any, ...]
    col_values: tuple[Any, ...]
    cells: Mapping[tuple[Any, Any], PValueCell]
    axes: tuple[str, ...] = ()
    alternative: str = "greater"
    confidence: float = 0.95
    sparse_only: tuple[str, ...] = ()
    sides: tuple[str, str] = ("sparse", "dense")
    baseline: tuple[str, Any] | None = None
    select: SelectRule | None = None
    select_incomplete: tuple[int, int] = (0, 0)

    def cell(self, row: Any, col: Any) -> PValueCell:
        """The :class:`PValueCell` at (row, col); KeyError naming the valid values."""
        try:
            return self.cells[(row, col)]
        except KeyError:
            raise KeyError(
                f"no cell ({row!r}, {col!r}); rows {list(self.row_values)}, "
                f"cols {list(self.col_values)}"
            ) from None

    def ordered(self) -> list[PValueCell]:
        """Every cell, row-major in display order."""
        return [self.cells[(r, c)] for r in self.row_values for c in self.col_values]

    def verdict(self, row: Any, col: Any) -> text.Verdict:
        """"sparse better", "dense better", "no clear difference (…)" or "not tested (…)" of
        one cell, by its CI and corrected p (rules in :mod:`sparseflow.analysis.table_text`)."""
        return text.verdict(self.cell(row, col), self.alpha, self.sides)

    def to_records(self) -> list[dict[str, Any]]:
        """One dict per cell (row-major): row/col values under their axis keys, the metric and
        correction, every :class:`TestResult` field (``alternative``, ``n_dropped`` included),
        ``p_adjusted``, ``significant``, diverged runs by kind, then sparse − dense in the
        metric's units as exported (``diff``, ``diff_ci_low``, ``diff_ci_high``; accuracy as a
        fraction, so ×100 gives the points shown) and the cell's ``verdict``; with a select
        rule, the chosen values per kind and the incomplete groups
        (:func:`table_select.record_fields`)."""
        return [
            {
                self.row_axis: c.row, self.col_axis: c.col, "metric": self.metric,
                "correction": self.correction, **asdict(c.result),
                "p_adjusted": c.p_adjusted, "significant": c.significant,
                "diverged_sparse": c.diverged_sparse, "diverged_dense": c.diverged_dense,
                "diff": c.result.diff, "diff_ci_low": c.result.diff_ci_low,
                "diff_ci_high": c.result.diff_ci_high,
                "verdict": text.verdict(c, self.alpha, self.sides).text,
                **sel.record_fields(self.select, c.choices),
            }  # fmt: skip
            for c in self.ordered()
        ]

    def to_csv(self) -> str:
        """The records as CSV text with a header line."""
        records = self.to_records()
        out = io.StringIO()
        writer = csv.DictWriter(out, fieldnames=list(records[0]) if records else [],
                                lineterminator="\n")  # fmt: skip
        writer.writeheader()
        writer.writerows(records)
        return out.getvalue()

    def caption_lines(self, style: str = "console") -> list[str]:
        """What was tested, what p means, what a cell shows, what the marks mean in ``style``
        (``"console"``, ``"markdown"``, ``"html"``); see :func:`table_text.caption_lines`."""
        return text.caption_lines(self, style)

    def caption(self, style: str = "console") -> str:
        """:meth:`caption_lines` as one paragraph."""
        return " ".join(self.caption_lines(style))

    def summary_lines(self) -> list[str]:
        """Plain sentences from the numbers: who was better in how many cells, the largest gap,
        one line per row value, the cells not tested (:func:`table_text.summary_lines`)."""
        return text.summary_lines(self)

    def selection_lines(self) -> list[str]:
        """With a select rule: the rule, then per cell the values chosen by each side and the
        incomplete groups ("optim.name=adam / variant=NR: sparse optim.lr 0.001 ×10, 0.1 ×5;
        dense 0.001 ×15"); no lines without one."""
        if self.select is None:
            return []
        return sel.selection_lines(self.select, self.ordered(),
                                   lambda c: f"{self.row_axis}={c.row} / {self.col_axis}={c.col}",
                                   self.sides, self.select_incomplete)

    def to_markdown(self, digits: int = 3) -> str:
        """Caption, then rows × cols of "p, sparse − dense [CI], n" (**bold** p when p ≤ alpha),
        then the summary sentences and the cells' notes (dropped values, unmatched runs, ...)."""
        return render.markdown(self, digits)

    def to_rich(self, width: int | None = None) -> Any:
        """A rich renderable: the table, its caption and its summary sentences. Cells take
        three lines (p; sparse − dense [CI]; n), bold green/red when p ≤ alpha with sparse/dense
        ahead; when that grid is wider than ``width`` columns the table turns to one line per
        cell (see :func:`table_render.rich`)."""
        return render.rich(self, width)


def _shared_twin_note(pairs: Pairs, within: Sequence[str], sparse_only: Sequence[str]) -> str:
    """A note when a cell pools values of a sparse-only axis: then one dense twin (or baseline
    run) is in several of its pairs, the pairs are not independent and p is optimistic."""
    pooled = [i for i, k in enumerate((*PAIR_ON, *within)) if k in sparse_only]
    if not pooled:
        return ""
    twins: dict[tuple[Any, ...], int] = {}
    for key in pairs.keys:
        reduced = tuple(v for i, v in enumerate(key) if i not in pooled)
        twins[reduced] = twins.get(reduced, 0) + 1
    most = max(twins.values(), default=1)
    if most <= 1:
        return ""
    axes = ", ".join(k for i, k in enumerate((*PAIR_ON, *within)) if i in pooled)
    return (f"pools {axes}: up to {most} pairs share one partner run, so the pairs are not "
            "independent and p is optimistic; make it the rows or columns")


def pvalue_table(
    runs: Sequence[Mapping[str, Any]],
    metric: str = "test_accuracy",
    rows: str | None = None,
    cols: str = "variant",
    *,
    test: str = "wilcoxon",
    correction: str = "none",
    alternative: str = "greater",
    alpha: float = 0.05,
    higher_is_better: bool | None = None,
    axes: Sequence[str] | None = None,
    confidence: float = 0.95,
    n_resamples: int = 9999,
    seed: int = 0,
    min_n: int | None = None,
    row_order: Sequence[Any] | None = None,
    col_order: Sequence[Any] | None = None,
    baseline: tuple[str, Any] | None = None,
    select: SelectRule | None = None,
) -> PValueTable:
    """Test sparse against dense per (``rows`` value, ``cols`` value) cell; H1 by
    ``alternative`` (default ``"greater"``: sparse better, the paper's test). With
    ``baseline=(axis, value)``: each other value of ``axis`` (the rows) against the baseline
    value, both sides sparse runs (see :func:`baseline_rows`).

    A sparse run is paired with its dense twin by :mod:`sparseflow.store.pairing`: the dense
    run of the same dense width, seed and every axis the dense run carries. A sparse-only axis
    (one no dense run carries, e.g. ``sparsity.masker``) may lay out the table: a dense run then
    belongs to every row (column) of its cell, so each row compares that value's sparse runs
    with the shared dense twins.

    Args:
        runs: one mapping per run (the study export contract). Only ``status == "finished"``
            (or no status) counts.
        metric: the value compared. higher_is_better: None → False when ``metric`` ends with
            ``"loss"``, else True.
        rows, cols: the keys whose values lay out the table (as ``study tests --rows/--cols``);
            rows default: ``"optim.name"``, or the baseline's axis (the only rows it allows).
        test, min_n, confidence, n_resamples, seed, alternative: passed to :func:`compare` for
            every cell (the same seed per cell, so a cell does not depend on which other cells
            exist). alternative: ``"greater"`` H1 sparse better, ``"less"`` sparse worse,
            ``"two-sided"`` either.
        correction: one of ``CORRECTIONS``, applied across all cells of the table.
        axes: swept keys that a pair must share besides ``dense_width`` and ``seed``; default
            every key containing a "." plus ``variant``, minus ``rows`` and ``cols``.
            Paired tests match runs with :func:`pair_up` (unmatched runs are noted); the unpaired
            ``mannwhitney`` uses every finished sparse and dense run of the cell.
        row_order, col_order: the row/column values shown; default order of first appearance.
        baseline: (axis, value): compare methods instead of sparse with dense. Pairs match on
            the dense width, seed and every other axis; H1 ``"greater"``: the row's value
            better than the baseline; differences are row value − baseline.
        select: a :class:`~sparseflow.store.selection.SelectRule`: compare only the runs it
            chooses by validation (one per kind and group of runs differing only in
            ``select.axis``, over ``runs`` of every status: a group with an unfinished run is
            incomplete, chooses nothing and is not tested). The axis is no part of a pair's
            key (each side at its chosen value) and cannot be ``rows`` or ``cols``; each cell's
            ``choices`` counts the values chosen.

    Raises:
        ValueError: unknown test/correction/alternative, a row without ``kind``, duplicate
            runs, a baseline whose axis is not the rows or whose value has no run, or rows or
            cols on the select axis.
    """
    if test not in TESTS:
        raise ValueError(f"unknown test {test!r}; valid: {list(TESTS)}")
    if correction not in CORRECTIONS:
        raise ValueError(f"unknown correction {correction!r}; valid: {list(CORRECTIONS)}")
    if alternative not in ALTERNATIVES:
        raise ValueError(f"unknown alternative {alternative!r}; valid: {list(ALTERNATIVES)}")
    row_key = rows or (baseline[0] if baseline is not None else "optim.name")
    pool, found = list(runs), None
    if select is not None:
        sel.check_layout(select, row_key, cols)
        plain = [k for k in (row_key, cols) if k not in ("dense_width", "seed")]
        pool, found = sel.apply(runs, select, sel.selection_axes(runs, axes, select, plain))
        axes = None if axes is None else [a for a in axes if a != select.axis]
    done = [r for r in pool if _finished(r)]
    if baseline is not None:
        rows = rows or baseline[0]
        if rows != baseline[0] or cols == baseline[0]:
            raise ValueError(f"a baseline {baseline[0]}={baseline[1]} lays out the rows by "
                             f"{baseline[0]} (rows {rows!r}, cols {cols!r}); pick other cols")
        done = baseline_rows(done, *baseline)
    row_key, col_key = rows or "optim.name", cols
    if higher_is_better is None:
        higher_is_better = not metric.endswith("loss")
    if axes is None:
        keys = {k for r in done for k in r if "." in k or k == "variant"}
        axes = sorted(keys - {row_key, col_key, "dense_width", "seed",
                              *([select.axis] if select else [])})
    lay = layout(done, row_key, col_key, axes, sparse_only=(baseline[0],) if baseline else None,
                 row_order=row_order, col_order=col_order)
    row_vals, col_vals, groups, only = lay.row_values, lay.col_values, lay.groups, lay.sparse_only
    within = lay.within
    choices, left = ({}, (0, 0)) if found is None else _selection_counts(
        runs, found, lay, row_key, col_key, baseline)
    opts = dict(test=test, higher_is_better=higher_is_better, confidence=confidence,
                n_resamples=n_resamples, seed=seed, min_n=min_n,
                alternative=alternative)  # fmt: skip
    results: dict[tuple[Any, Any], TestResult] = {}
    lower = not higher_is_better
    for key in ((r, c) for r in row_vals for c in col_vals):
        runs = groups.get(key, [])
        if test == "mannwhitney":
            values = {k: [_metric(r, metric, i, lower) for i, r in enumerate(runs)
                          if r.get("kind") == k]
                      for k in ("sparse", "dense")}  # fmt: skip
            results[key] = compare(values["sparse"], values["dense"], **opts)
            continue
        pairs = pair_up(runs, metric, within=within, lower_is_better=lower, sparse_only=only)
        res = compare(pairs.sparse, pairs.dense, **opts)
        notes = [res.note]
        if pairs.unmatched_sparse or pairs.unmatched_dense:
            notes.append(f"ignored {pairs.unmatched_sparse} sparse and "
                         f"{pairs.unmatched_dense} dense run(s) without a partner")
        notes.append(_shared_twin_note(pairs, within, only))
        res = replace(res, note="; ".join(x for x in notes if x))
        results[key] = res
    adjusted = correct([res.p_value for res in results.values()], correction)
    cells = {
        key: PValueCell(key[0], key[1], res, p, not math.isnan(p) and p <= alpha,
                        *_diverged_counts(groups.get(key, [])),
                        choices=None if found is None else choices.get(key, sel.CellChoices()))
        for (key, res), p in zip(results.items(), adjusted, strict=True)
    }
    return PValueTable(
        metric=metric, row_axis=row_key, col_axis=col_key, test=test, correction=correction,
        alpha=alpha, higher_is_better=higher_is_better, row_values=row_vals,
        col_values=col_vals, cells=cells, axes=tuple(axes), alternative=alternative,
        confidence=confidence, sparse_only=tuple(only),
        sides=(BASELINE_SIDES if baseline else SIDES),
        baseline=None if baseline is None else (baseline[0], _freeze(baseline[1])),
        select=select, select_incomplete=left,
    )  # fmt: skip


def _selection_counts(runs: Sequence[Mapping[str, Any]], found: sel.Selection, lay: Layout,
                      row_key: str, col_key: str, baseline: tuple[str, Any] | None
                      ) -> tuple[dict[tuple[Any, Any], sel.CellChoices], tuple[int, int]]:
    """(each cell's chosen values and incomplete groups, the (sparse, dense) incomplete groups
    of the whole table): the runs placed as the table places them, a baseline table's
    relabelled as its sides."""
    left = sel.incomplete_runs(runs, found)
    if baseline is not None:
        left = _relabel(left, *baseline)
    placed = _groups(left, row_key, col_key, lay.row_values, lay.col_values, lay.sparse_only)
    totals = (sum(r.get("kind") == "sparse" for r in left),
              sum(r.get("kind") == "dense" for r in left))
    return sel.cell_choices(lay.groups, placed, found.rule), totals


def baseline_rows(rows: Sequence[Mapping[str, Any]], axis: str, value: Any
                  ) -> list[dict[str, Any]]:
    """The sparse runs of ``rows`` relabelled for a method-vs-baseline table: a run whose
    ``axis`` is ``value`` becomes the ``"dense"`` side (the baseline, its ``axis`` cleared, so
    that it belongs to every row as a dense twin does), every other sparse run the
    ``"sparse"`` side; dense runs are left out. ValueError when no sparse run has ``value``."""
    want = _freeze(value)
    sparse = [r for r in rows if r.get("kind") == "sparse"]
    if not any(_freeze(r.get(axis)) == want for r in sparse):
        seen = list(dict.fromkeys(_freeze(r.get(axis)) for r in sparse))
        raise ValueError(f"no finished sparse run has {axis}={value!r}; values: {seen}")
    return _relabel(sparse, axis, value)


def _relabel(rows: Sequence[Mapping[str, Any]], axis: str, value: Any) -> list[dict[str, Any]]:
    """The sparse rows as the sides of a baseline table (see :func:`baseline_rows`)."""
    want = _freeze(value)
    return [{**r, "kind": "dense", axis: None} if _freeze(r.get(axis)) == want else dict(r)
            for r in rows if r.get("kind") == "sparse"]


def _diverged_counts(runs: Sequence[Mapping[str, Any]]) -> tuple[int, int]:
    """(sparse, dense) diverged runs among a cell's finished runs."""
    return (sum(r.get("kind") == "sparse" and is_diverged(r) for r in runs),
            sum(r.get("kind") == "dense" and is_diverged(r) for r in runs))
