"""The p-value table under a select rule: which runs it compares, and what each cell chose.

With a study's ``select`` rule (:mod:`sparseflow.store.selection`), a table compares only the
chosen runs: each group of runs that differ only in the select axis contributes its best run by
validation, separately for sparse and dense, and a pair is the chosen sparse run with the chosen
dense run of the same dense width, seed and other axes — the two sides may sit at different
values of the select axis. The axis is tuned away, so it is no part of a pair's key and cannot
lay the table out. Each cell counts the values its groups chose, by kind, and its incomplete
groups (not selected, not tested).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sparseflow.store.pairing import freeze
from sparseflow.store.selection import GROUP_ON, Selection, SelectRule, select, value_label


@dataclass(frozen=True)
class CellChoices:
    """What the groups of one table cell chose: (value, groups) of the select axis per kind,
    in the axis's order, and the groups that chose nothing (incomplete) per kind."""

    sparse: tuple[tuple[Any, int], ...] = ()
    dense: tuple[tuple[Any, int], ...] = ()
    incomplete_sparse: int = 0
    incomplete_dense: int = 0

    def counts(self, kind: str) -> tuple[tuple[Any, int], ...]:
        """The (value, count) pairs of ``kind`` ("sparse" or "dense")."""
        return self.sparse if kind == "sparse" else self.dense


def check_layout(rule: SelectRule, row_key: str, col_key: str) -> None:
    """ValueError when the table would be laid out by the tuned-away axis."""
    for what, key in (("rows", row_key), ("cols", col_key)):
        if key == rule.axis:
            raise ValueError(f"{what} {key!r}: {key} is tuned away by the study's select rule "
                             f"(each group keeps its best {key} by {rule.metric}), so it "
                             "cannot lay out the table; choose another axis")


def selection_axes(runs: Sequence[Mapping[str, Any]], axes: Sequence[str] | None,
                   rule: SelectRule, extra: Sequence[str]) -> list[str]:
    """The swept keys a selection group shares besides kind, dense width and seed: ``axes``
    (default: every key of the runs containing a "." plus ``variant``) and ``extra`` (the
    table's rows and columns), without the select axis."""
    found = axes if axes is not None else sorted(
        {k for r in runs for k in r if "." in k or k == "variant"})
    keys = dict.fromkeys([*found, *extra])
    return [k for k in keys if k != rule.axis and k not in GROUP_ON]


def apply(runs: Sequence[Mapping[str, Any]], rule: SelectRule, axes: Sequence[str]
          ) -> tuple[list[Mapping[str, Any]], Selection]:
    """(the chosen runs, in ``runs`` order; the :class:`Selection`) over every run given,
    whatever its status (an unfinished run makes its group incomplete)."""
    found = select(runs, rule, axes)
    chosen = found.selected()
    return [r for i, r in enumerate(runs) if i in chosen], found


def _tally(values: Sequence[Any], order: Sequence[Any]) -> tuple[tuple[Any, int], ...]:
    """(value, count) of ``values``, in ``order`` then first appearance."""
    counts: dict[Any, int] = {}
    for v in values:
        counts[v] = counts.get(v, 0) + 1
    keys = [v for v in dict.fromkeys([*order, *counts]) if v in counts]
    return tuple((v, counts[v]) for v in keys)


def cell_choices(groups: Mapping[tuple[Any, Any], Sequence[Mapping[str, Any]]],
                 incomplete: Mapping[tuple[Any, Any], Sequence[Mapping[str, Any]]],
                 rule: SelectRule) -> dict[tuple[Any, Any], CellChoices]:
    """Each cell's :class:`CellChoices`: ``groups`` maps a cell to its chosen runs (a dense
    twin shared by a sparse-only row or column counts in each of its cells), ``incomplete`` to
    one run of each incomplete group placed the same way."""
    out = {}
    for key in dict.fromkeys([*groups, *incomplete]):
        chosen = groups.get(key, [])
        left = incomplete.get(key, [])
        by_kind = {k: _tally([freeze(r.get(rule.axis)) for r in chosen if r.get("kind") == k],
                             rule.values) for k in ("sparse", "dense")}
        out[key] = CellChoices(by_kind["sparse"], by_kind["dense"],
                               sum(r.get("kind") == "sparse" for r in left),
                               sum(r.get("kind") == "dense" for r in left))
    return out


def incomplete_runs(runs: Sequence[Mapping[str, Any]], found: Selection
                    ) -> list[Mapping[str, Any]]:
    """One run (the first) of each incomplete group, to place the group in the table's cells."""
    return [runs[g.members[0]] for g in found.incomplete() if g.members]


def counts_text(counts: Sequence[tuple[Any, int]]) -> str:
    """``0.001 ×10, 0.1 ×5`` (``–`` when nothing was chosen)."""
    return ", ".join(f"{value_label(v)} ×{n}" for v, n in counts) or "–"


def counts_json(counts: Sequence[tuple[Any, int]]) -> str:
    """``{"0.001": 10, "0.1": 5}``: the counts as one JSON object (a CSV cell)."""
    return json.dumps({value_label(v): n for v, n in counts})


def choice_text(rule: SelectRule, choices: CellChoices,
                sides: Sequence[str] = ("sparse", "dense")) -> str:
    """``sparse optim.lr 0.001 ×10, 0.1 ×5; dense 0.001 ×15`` and, when some groups are
    incomplete, how many (nothing chosen, not tested); ``sides`` names the two kinds."""
    a, b = sides
    text = f"{a} {rule.axis} {counts_text(choices.sparse)}; {b} {counts_text(choices.dense)}"
    n_a, n_b = choices.incomplete_sparse, choices.incomplete_dense
    if n_a or n_b:
        parts = [f"{n} {side}" for n, side in ((n_a, a), (n_b, b)) if n]
        text += f"; incomplete, not tested: {' and '.join(parts)} group(s)"
    return text


def incomplete_text(rule: SelectRule, n_sparse: int, n_dense: int,
                    sides: Sequence[str] = ("sparse", "dense")) -> str:
    """"2 sparse and 1 dense group(s) incomplete: ..." (a side with none left out)."""
    parts = [f"{n} {side}" for n, side in ((n_sparse, sides[0]), (n_dense, sides[1])) if n]
    return (f"{' and '.join(parts) or 'no'} group(s) incomplete: some {rule.axis} run not "
            "finished, so nothing chosen there and those pairs not tested")


def selection_lines(rule: SelectRule, cells: Sequence[Any], where: Callable[[Any], str],
                    sides: Sequence[str] = ("sparse", "dense"),
                    incomplete: tuple[int, int] = (0, 0)) -> list[str]:
    """The rule, the incomplete groups of the whole table (``incomplete``: sparse, dense; also
    those of a row or column value with no chosen run, which has no cell), then one line per
    cell (``where(cell)`` names it) with its choices; ``cells`` carry ``choices``
    (:class:`CellChoices`)."""
    lines = [f"Selection: {rule.text()}."]
    if any(incomplete):
        lines.append(f"In all, {incomplete_text(rule, *incomplete, sides)}.")
    lines += [f"{where(c)}: {choice_text(rule, c.choices, sides)}" for c in cells
              if c.choices is not None]
    return lines


def record_fields(rule: SelectRule | None, choices: CellChoices | None) -> dict[str, Any]:
    """The CSV/record columns of a cell's selection (none without a rule): the axis and
    metric, the chosen values' counts per kind as JSON, the incomplete groups per kind."""
    if rule is None:
        return {}
    c = choices or CellChoices()
    return {"select_axis": rule.axis, "select_metric": rule.metric,
            "chosen_sparse": counts_json(c.sparse), "chosen_dense": counts_json(c.dense),
            "incomplete_sparse": c.incomplete_sparse, "incomplete_dense": c.incomplete_dense}
