"""The report as ONE self-contained HTML page: inline CSS, PNG figures as base64 data URIs,
no script and no external resource, so it opens offline, mails as one file and prints.

Every text that comes from the study (names, axis values, error messages) is escaped.
"""

from __future__ import annotations

import base64
import contextlib
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from html import escape
from typing import Any

from sparseflow._version import __version__
from sparseflow.analysis import CorrelationTable, PValueCell, PValueTable
from sparseflow.analysis import table_text as text
from sparseflow.report.data import label

_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,Helvetica,Arial,sans-serif;
 margin:2em auto;max-width:1280px;padding:0 1.5em;color:#1a1a1a;line-height:1.45}
h1{font-size:1.6em;margin-bottom:.2em}h2{font-size:1.25em;margin-top:2em;
 border-bottom:1px solid #ddd;padding-bottom:.2em}
table{border-collapse:collapse;margin:.6em 0;font-variant-numeric:tabular-nums}
th,td{border:1px solid #d0d0d0;padding:.3em .65em;text-align:right;vertical-align:top}
th{background:#f3f3f3}td.key,th.key{text-align:left}th[colspan]{text-align:center}
td.pooled,th.pooled{border-left:2px solid #999}
table.summary td{text-align:left}table.summary td:first-child{font-weight:600;
 white-space:nowrap;background:#fafafa}
td.sig{background:#d9f2d9;color:#0b5d1e}td.sigdense{background:#f6dede;color:#8a1c1c}
td.na{color:#888}.n,.gap{display:block;font-size:.78em;color:#666}.gap{white-space:nowrap}
td.best{font-weight:700}ul.verdict{font-size:.95em}
.caption,figcaption{font-size:.9em;color:#444;max-width:75em}
figure{margin:1.2em 0}img{max-width:100%;height:auto;border:1px solid #eee}
ul.notes{font-size:.85em;color:#555}details{margin:.5em 0}footer{margin-top:3em;
 font-size:.8em;color:#777}code{background:#f4f4f4;padding:0 .25em}
"""


@dataclass(frozen=True)
class FigureBlock:
    """A rendered figure for the page: its file stem, title, caption, PNG bytes and the paths
    of its files relative to the page (none when no file was written)."""

    name: str
    title: str
    caption: str
    png: bytes
    files: tuple[str, ...] = ()


def _num(value: float, digits: int = 3) -> str:
    return "n/a" if not math.isfinite(value) else f"{value:.{digits}g}"


def pvalue_text(cell: PValueCell, digits: int = 3) -> str:
    """The p shown in a cell, exactly as ``study tests`` prints it ("p = 0.016", "n<5", ...)."""
    return text.p_text(cell, digits)


def _pvalue_tooltip(cell: PValueCell, sides: Sequence[str] = ("sparse", "dense")) -> str:
    r = cell.result
    a, b = sides
    parts = [f"p = {_num(r.p_value, 4)} before correction" if math.isfinite(r.p_value) else "",
             f"mean {a} {_num(r.mean_sparse)}, mean {b} {_num(r.mean_dense)}",
             f"{a} − {b} {_num(r.diff)}",
             f"95% CI {_num(r.diff_ci_low)} to {_num(r.diff_ci_high)}"
             if math.isfinite(r.ci_low) and math.isfinite(r.ci_high) else "",
             f"{r.effect_name} {_num(r.effect_size)} (> 0: {a} better)"
             if math.isfinite(r.effect_size) else "",
             r.note]
    return "; ".join(p for p in parts if p)


def _pvalue_td(table: PValueTable, cell: PValueCell) -> str:
    """One cell: the p (bold when ≤ α), sparse − dense [CI], n; green when significant with
    sparse ahead, red with dense ahead, grey when untested."""
    side = text.significant_side(cell)
    css = {1: "sig", -1: "sigdense"}.get(side, "na" if math.isnan(cell.p_adjusted) else "")
    p = escape(pvalue_text(cell))
    shown = f"<b>{p}</b>" if cell.significant else p
    gap = text.gap_text(cell.result, table.metric)
    gap_html = f'<span class="gap">{escape(gap)}</span>' if gap else ""
    return (f'<td class="{css}" title="{escape(_pvalue_tooltip(cell, table.sides))}">'
            f"{shown}{gap_html}"
            f'<span class="n">{escape(text.n_text(cell))}</span></td>')


def pvalue_html(table: PValueTable, css_class: str = "pvalues") -> str:
    """The p-value table in the paper's layout: rows × columns, each cell the p (bold when
    p ≤ α, on green with sparse ahead, on red with dense ahead), sparse − dense with its CI and
    n; the caption, the summary sentences and the cells' notes below; details on hover. A
    method-vs-baseline table (``table.baseline``) names its sides ("A", "baseline") instead,
    green where A is ahead; ``css_class`` tells the page's tables apart."""
    head = "".join(f"<th>{escape(label(c))}</th>" for c in table.col_values)
    lines = [f'<table class="{escape(css_class)}"><tr><th class="key">{escape(table.row_axis)} \\ '
             f"{escape(table.col_axis)}</th>{head}</tr>"]
    for r in table.row_values:
        tds = "".join(_pvalue_td(table, table.cell(r, c)) for c in table.col_values)
        lines.append(f'<tr><th class="key">{escape(label(r))}</th>{tds}</tr>')
    lines.append("</table>")
    lines.append(f'<p class="caption">{escape(table.caption("html"))} Hover a cell for the '
                 "means, the p before correction and the effect size.</p>")
    lines.append('<ul class="verdict">' + "".join(f"<li>{escape(s)}</li>"
                                                  for s in table.summary_lines()) + "</ul>")
    notes = [f"{label(c.row)} / {label(c.col)}: {text.cell_notes(c, table.sides)}"
             for c in table.ordered() if text.cell_notes(c, table.sides)]
    if notes:
        lines.append('<ul class="notes">' + "".join(f"<li>{escape(n)}</li>" for n in notes)
                     + "</ul>")
    return "\n".join(lines)


_MEASURES = {"gf1": "‖g‖₁", "gf2": "‖g‖₂", "egf1": "EGF₁", "egf2": "EGF₂"}
_TARGETS = {"test_loss": "loss", "test_accuracy": "acc"}
_TARGET_NAMES = {"test_loss": "test loss", "test_accuracy": "test accuracy"}


def kendall_html(table: CorrelationTable, counts: dict[str, int]) -> str:
    """|τ| in the paper's layout (measures × kind/target, best measure per column in bold,
    signed τ, p and n in each tooltip), then the signed τ and p-values in a details block."""
    cols = [(k, t) for k in table.kinds for t in table.targets]
    best: dict[tuple[str, str], str] = {}
    for k, t in cols:
        with contextlib.suppress(ValueError):  # τ undefined for every measure (too few runs)
            best[(k, t)] = table.best(k, t)
    head = "".join(f"<th>{k.capitalize()}: {_TARGETS.get(t, t)}</th>" for k, t in cols)
    rows, signed = [], []
    for m in table.measures:
        name = escape(_MEASURES.get(m, m))
        tds, sds = [], []
        for k, t in cols:
            c = table.cell(m, k, t)
            ok = math.isfinite(c.tau)
            tip = f"τ = {c.tau:+.3f}, p = {_num(c.p_value)}, n = {c.n}" if ok else c.note
            css = "best" if best.get((k, t)) == m else ("" if ok else "na")
            tds.append(f'<td class="{css}" title="{escape(tip)}">'
                       f"{f'{abs(c.tau):.3f}' if ok else 'n/a'}</td>")
            sds.append(f"<td>{f'{c.tau:+.3f} (p = {_num(c.p_value)})' if ok else 'n/a'}</td>")
        rows.append(f'<tr><th class="key">{name}</th>{"".join(tds)}</tr>')
        signed.append(f'<tr><th class="key">{name}</th>{"".join(sds)}</tr>')
    header = f'<tr><th class="key">Measure</th>{head}</tr>'
    return "\n".join([
        f'<table class="kendall">{header}{"".join(rows)}</table>',
        f'<p class="caption">Kendall τ-b between each finished run\'s average measure (over '
        f"its probe points) and its test loss / accuracy, over {counts.get('sparse', 0)} sparse "
        f"and {counts.get('dense', 0)} dense runs, shown as |τ| like the paper; bold: the "
        "measure with the largest |τ| in its column. Hover a cell for the signed τ, its "
        "two-sided p and n.</p>",
        f'<details><summary>signed τ and p-values</summary><table class="kendall-signed">'
        f'{header}{"".join(signed)}</table></details>',
    ])


_FILE_NOTES = {"-1col.pdf": " (one column, 3.5 in)", ".pdf": " (two columns, 7 in)"}


def figure_html(block: FigureBlock) -> str:
    """A figure: the PNG inline as a data URI, its caption and its files (linked, relative to
    the page)."""
    data = base64.b64encode(block.png).decode("ascii")
    links = []
    for path in block.files:
        note = next((v for k, v in _FILE_NOTES.items() if path.endswith(k)), "")
        links.append(f'<a href="{escape(path)}"><code>{escape(path)}</code></a>{note}')
    files = f" Files: {', '.join(links)}." if links else ""
    return (f'<figure id="{escape(block.name)}"><img src="data:image/png;base64,{data}" '
            f'alt="{escape(block.title)}"><figcaption>{escape(block.caption)}{files}'
            "</figcaption></figure>")


def kendall_width_html(pooled: CorrelationTable, by_width: Mapping[Any, CorrelationTable]
                       ) -> str:
    """Signed Kendall τ pooled over all runs of a kind and within each dense width: one row
    per (kind, measure), one column group per target (pooled first, then each width), n
    under every τ."""
    widths = list(by_width)
    groups = [("pooled", pooled), *((f"W_D = {label(w)}", by_width[w]) for w in widths)]
    top = "".join(f'<th colspan="{len(groups)}">{escape(_TARGET_NAMES.get(t, t))}</th>'
                  for t in pooled.targets)
    sub = "".join(f'<th{" class=pooled" if g == "pooled" else ""}>{escape(g)}</th>'
                  for _ in pooled.targets for g, _ in groups)
    lines = [f'<table class="kendall-width"><tr><th class="key" rowspan="2">Runs</th>'
             f'<th class="key" rowspan="2">Measure</th>{top}</tr><tr>{sub}</tr>']
    for kind in pooled.kinds:
        for i, m in enumerate(pooled.measures):
            tds = []
            for t in pooled.targets:
                for _, table in groups:
                    c = table.cell(m, kind, t)
                    shown = f"{c.tau:+.3f}" if math.isfinite(c.tau) else "n/a"
                    tip = f"p = {_num(c.p_value)}" if math.isfinite(c.tau) else c.note
                    css = ' class="pooled"' if table is pooled else ""
                    tds.append(f'<td{css} title="{escape(tip)}">{shown}'
                               f'<span class="n">n={c.n}</span></td>')
            head = (f'<th class="key" rowspan="{len(pooled.measures)}">{escape(kind)}</th>'
                    if i == 0 else "")
            lines.append(f'<tr>{head}<th class="key">{escape(_MEASURES.get(m, m))}</th>'
                         f'{"".join(tds)}</tr>')
    lines.append("</table>")
    lines.append('<p class="caption">Signed Kendall τ-b of each measure against the test '
                 "loss and accuracy, over all runs of a kind (pooled, as in the table above) "
                 "and within each dense width W_D alone, with the number of runs n. Pooled "
                 "runs of different widths differ in capacity as well as in gradient flow; a "
                 "τ that holds within every width is about gradient flow, one that only the "
                 "pooled column shows is largely about capacity.</p>")
    return "\n".join(lines)


def page(title: str, summary: Sequence[tuple[str, str]], sections: Sequence[tuple[str, str]],
         failed: Sequence[tuple[str, str]] = ()) -> str:
    """The whole document: title, summary table, then each (heading, HTML body) section and
    the errors of failed runs (up to 20)."""
    items = "".join(f"<tr><td>{escape(k)}</td><td>{escape(v)}</td></tr>" for k, v in summary)
    body = [f"<h1>{escape(title)}</h1>", "<h2>Summary</h2>",
            f'<table class="summary">{items}</table>']
    for heading, html in sections:
        body += [f"<h2>{escape(heading)}</h2>", html]
    if failed:
        shown = "".join(f"<li><code>{escape(k)}</code>: {escape(e)}</li>" for k, e in failed[:20])
        more = f"<p>… and {len(failed) - 20} more.</p>" if len(failed) > 20 else ""
        body += ["<h2>Failed runs</h2>", f'<ul class="notes">{shown}</ul>{more}']
    body.append(f"<footer>Generated by sparseflow {escape(__version__)} "
                "(<code>sparseflow study report</code>) from the study store. SC-SDC and EGF "
                "after Tessera, Hooker and Rosman, arXiv 2102.01670.</footer>")
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            f"<title>{escape(title)}</title><style>{_CSS}</style></head>\n<body>\n"
            + "\n".join(body) + "\n</body></html>\n")
