"""The p-value table as markdown and as a rich renderable (the console of ``study run``,
``study tests`` and ``reproduce``). Every word comes from :mod:`sparseflow.analysis.table_text`.

The console keeps the paper's grid (rows × columns, a cell of three lines: p; sparse − dense
[CI]; n) while it fits the terminal; a grid wider than the terminal first splits the CI onto
its own line, and when even that does not fit (many columns) the table turns to one line per
cell, which fits 80 columns for any number of columns.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sparseflow.analysis import table_text as text

if TYPE_CHECKING:
    from sparseflow.analysis.tables import PValueCell, PValueTable


def _bold(cell: PValueCell, value: str) -> str:
    return f"**{value}**" if cell.significant else value


def markdown(table: PValueTable, digits: int = 3) -> str:
    """Caption paragraph; the grid, each cell "p = 0.003, +2.1 pts [+1.2, +3.0], n=24"
    (p in **bold** when ≤ alpha); the summary sentences; the cells' notes."""
    lines = [
        table.caption("markdown"), "",
        f"| {table.row_axis} | " + " | ".join(str(c) for c in table.col_values) + " |",
        "|---|" + "---|" * len(table.col_values),
    ]  # fmt: skip
    for r in table.row_values:
        texts = []
        for c in table.col_values:
            cell = table.cells[(r, c)]
            parts = [_bold(cell, text.p_text(cell, digits)),
                     text.gap_text(cell.result, table.metric), text.n_text(cell)]
            texts.append(", ".join(p for p in parts if p))
        lines.append(f"| {r} | " + " | ".join(texts) + " |")
    lines += ["", *(f"- {s}" for s in table.summary_lines())]
    notes = [f"- {c.row} / {c.col}: {text.cell_notes(c, table.sides)}"
             for c in table.ordered() if text.cell_notes(c, table.sides)]
    if notes:
        lines += ["", "Notes:", *notes]
    chosen = table.selection_lines()
    if chosen:
        lines += ["", chosen[0], "", *(f"- {s}" for s in chosen[1:])]
    return "\n".join(lines)


def title(table: PValueTable) -> str:
    """The question the table answers, under its alternative."""
    a, b = table.sides
    if table.baseline is not None:
        a, b = f"each {table.baseline[0]} value", f"{table.baseline[0]}={table.baseline[1]}"
        return {"greater": f"Is {a} better than {b} on {table.metric}?",
                "less": f"Is {a} worse than {b} on {table.metric}?",
                "two-sided": f"Does {a} differ from {b} on {table.metric}?"}[table.alternative]
    return {"greater": f"Is {a} better than {b} on {table.metric}?",
            "less": f"Is {a} worse than {b} on {table.metric}?",
            "two-sided": f"Do {a} and {b} differ on {table.metric}?"}[table.alternative]


def _style(cell: PValueCell) -> str:
    side = text.significant_side(cell)
    return "bold green" if side > 0 else "bold red" if side < 0 else ""


def _cell_lines(table: PValueTable, cell: PValueCell, split: bool) -> list[str]:
    gap, ci = text.gap_parts(cell.result, table.metric)
    middle = [gap, ci] if split else [" ".join(x for x in (gap, ci) if x)]
    return [text.p_text(cell), *(m for m in middle if m), text.n_text(cell)]


def _grid_width(table: PValueTable, split: bool) -> int:
    """Columns the grid needs: each column's widest line, plus rich's padding and borders."""
    widths = [max([len(table.row_axis), *(len(str(r)) for r in table.row_values)])]
    for c in table.col_values:
        lines = [ln for r in table.row_values
                 for ln in _cell_lines(table, table.cells[(r, c)], split)]
        widths.append(max([len(str(c)), *map(len, lines)]))
    return sum(widths) + 3 * len(widths) + 1


def _grid(table: PValueTable, split: bool) -> Any:
    from rich.table import Table

    out = Table(title=title(table))
    out.add_column(_styled(table.row_axis))
    for c in table.col_values:
        out.add_column(_styled(str(c)), justify="right")
    for r in table.row_values:
        texts = []
        for c in table.col_values:
            cell = table.cells[(r, c)]
            texts.append(_styled("\n".join(_cell_lines(table, cell, split)), _style(cell)))
        out.add_row(_styled(str(r)), *texts)
    return out


def _long(table: PValueTable) -> Any:
    """One line per cell: row value, column value, p, sparse − dense, CI, n."""
    from rich.table import Table

    out = Table(title=title(table))
    for name in (table.row_axis, table.col_axis):
        out.add_column(_styled(name))
    for name in ("p", text.difference(table), f"{100 * table.confidence:g}% CI", "n"):
        out.add_column(name, justify="right")
    for cell in table.ordered():
        gap, ci = text.gap_parts(cell.result, table.metric)
        values = (str(cell.row), str(cell.col), text.p_text(cell), gap, ci, text.n_text(cell))
        out.add_row(*(_styled(v) for v in values), style=_style(cell) or None)
    return out


def _styled(value: str, style: str = "") -> Any:
    from rich.text import Text

    return Text(value, style=style)  # Text: a value such as "[bold]" is never read as markup


def rich(table: PValueTable, width: int | None = None) -> Any:
    """The table (grid, or one line per cell when the grid is wider than ``width``), then the
    caption and the summary sentences, as one rich ``Group``."""
    from rich.console import Group
    from rich.text import Text

    grid: Any = None
    for split in (False, True):
        if width is None or _grid_width(table, split) <= width:
            grid = _grid(table, split)
            break
    body = grid if grid is not None else _long(table)
    notes = [f"{c.row} / {c.col}: {text.cell_notes(c, table.sides)}" for c in table.ordered()
             if text.cell_notes(c, table.sides)]
    parts: list[Any] = [body, Text(" ".join(table.caption_lines("console")), style="dim"),
                        Text("")]
    parts += [Text(s) for s in table.summary_lines()]
    if notes:
        parts.append(Text("notes: " + "; ".join(notes), style="dim"))
    chosen = table.selection_lines()
    if chosen:
        parts += [Text(""), *(Text(s) for s in chosen)]
    return Group(*parts)
