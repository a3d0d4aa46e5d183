"""``sparseflow study lift``: does a treatment (BatchNorm by default) help sparse nets more than
their dense twins? (:mod:`sparseflow.analysis.lift`)."""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

from sparseflow.cli.study_cmd import ALL_RUNS, ALPHA, check_test_options, study_axes, where_runs
from sparseflow.errors import ConfigError


def lift(
    directory: Path = typer.Argument(..., help="Study directory."),
    pair: list[str] = typer.Option([], "--pair", help="BASE:TREATED values of --axis "
                                   "(repeatable; default: every X with an X_BN, and NR:BN)."),
    axis: str = typer.Option("variant", help="The axis whose values are treated and base."),
    rows: str | None = typer.Option(None, help="Row axis (default: the first swept axis not "
                                    "tuned by select)."),
    metric: str = typer.Option("test_accuracy", help="Metric (losses: a lower value is the "
                               "larger lift)."),
    test: str = typer.Option("wilcoxon", help="wilcoxon (paired) or ttest (paired)."),
    correction: str = typer.Option("none", help="Multiple comparisons over the cells: none, "
                                   "holm, bh."),
    alternative: str = typer.Option("greater", help="H1: greater = the sparse lift is larger "
                                    "(the treatment matters more for sparse nets), less, "
                                    "two-sided."),
    alpha: float = ALPHA,
    fmt: str = typer.Option("console", "--format", help="console, markdown or csv."),
    where: list[str] = typer.Option([], "--where", help="AXIS=VALUE (repeatable): only the "
                                    "runs that hold it."),
    all_runs: bool = ALL_RUNS,
) -> None:
    """Per row value and BASE:TREATED pair: the mean lift (treated − base) of the sparse nets
    and of their dense twins, their difference with its 95% CI, and the paired test of H1
    "the sparse lift is larger", units matched by dense width, seed and every other axis."""
    from sparseflow.analysis.lift import lift_table, treated_pairs

    check_test_options(metric, test, correction, alternative, alpha, fmt)
    if test == "mannwhitney":
        raise ConfigError("--test mannwhitney compares unpaired groups; a lift is paired by "
                          "unit: use wilcoxon or ttest")
    axes, results, rule = study_axes(directory, all_runs)
    results = where_runs(where, axes, results)
    if axis not in axes:
        raise ConfigError(f"--axis {axis!r} is not a swept axis of this study; axes: "
                          f"{', '.join(axes)}")
    shown = [a for a in axes if a != axis and (rule is None or a != rule.axis)]
    rows = rows or (shown[0] if shown else None)
    if rows is None or rows not in axes or rows == axis:
        raise ConfigError(f"--rows must be a swept axis other than {axis!r}; axes: "
                          f"{', '.join(a for a in axes if a != axis)}")
    values = list(dict.fromkeys(r.get(axis) for r in results if r.get(axis) is not None))
    pairs = [_pair(p, axis, values) for p in pair] if pair else treated_pairs(values)
    if not pairs:
        raise ConfigError(f"no BASE:TREATED pair among the values of {axis} "
                          f"({', '.join(map(str, values))}): give --pair, e.g. --pair NR:BN")
    cells = lift_table(results, rows=rows, pairs=pairs, axes=[a for a in axes if a != axis],
                       axis=axis, metric=metric, test=test, alternative=alternative,
                       correction=correction)
    _print(cells, rows, pairs, metric, alpha, fmt)


def _pair(text: str, axis: str, values: list[Any]) -> tuple[Any, Any]:
    base, sep, treated = (t.strip() for t in text.partition(":"))
    if not sep or not base or not treated:
        raise ConfigError(f"--pair {text!r}: give BASE:TREATED, e.g. --pair NR:BN")
    by_name = {str(v): v for v in values}
    for name in (base, treated):
        if name not in by_name:
            raise ConfigError(f"--pair: {name!r} is not a value of {axis} in this study; "
                              f"values: {', '.join(by_name)}")
    return by_name[base], by_name[treated]


def _print(cells: list[Any], rows: str, pairs: list[tuple], metric: str, alpha: float,
           fmt: str) -> None:
    if fmt == "csv":
        print(_csv(cells, rows), end="")
        return
    heads = [f"{b}→{t}" for b, t in pairs]
    row_values = list(dict.fromkeys(c.row for c in cells))
    by_key = {(c.row, c.base, c.treated): c for c in cells}
    body = [[_cell(by_key[(r, b, t)], metric, alpha, fmt == "markdown") for b, t in pairs]
            for r in row_values]
    from sparseflow.analysis.table_text import unit_words

    caption = (f"Lift = {metric}(treated) − {metric}(base), mean over units: sparse vs dense, "
               f"their difference in {unit_words(metric)} [95% CI], p of H1 (--alternative), "
               "n units (dense width × seed × the other axes).")
    if fmt == "markdown":
        print(f"| {rows} | " + " | ".join(heads) + " |")
        print("|---|" + "---|" * len(heads))
        for r, line in zip(row_values, body, strict=True):
            print(f"| {r} | " + " | ".join(line) + " |")
        print(f"\n{caption}")
        return
    table = Table(rows, *heads, caption=caption, show_lines=True)
    for r, line in zip(row_values, body, strict=True):
        table.add_row(str(r), *line)
    Console().print(table)


def _cell(c: Any, metric: str, alpha: float, markdown: bool) -> str:
    """"+1.71 vs +0.43: +1.28 [+0.74, +2.48], p<0.001, n=15" (accuracies in points)."""
    from sparseflow.analysis.table_text import decimals_for, signed, unit

    res = c.result
    if not math.isfinite(res.p_value):
        return f"n={res.n}: {res.note or 'not tested'}"
    k = unit(metric)[0]
    diff, low, high = (k * x for x in (res.diff, res.diff_ci_low, res.diff_ci_high))
    places = max(2, decimals_for(diff, low, high))
    p = c.p_adjusted
    text = (f"{signed(k * c.sparse_lift, places)} vs {signed(k * c.dense_lift, places)}: "
            f"{signed(diff, places)} [{signed(low, places)}, {signed(high, places)}], "
            f"p{'<0.001' if p < 0.001 else f'={p:.3f}'}, n={res.n}")
    return f"**{text}**" if markdown and p <= alpha else text


def _csv(cells: list[Any], rows: str) -> str:
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\n")
    w.writerow([rows, "base", "treated", "sparse_lift", "dense_lift", "diff", "diff_ci_low",
                "diff_ci_high", "p_value", "p_adjusted", "n", "alternative", "note"])
    for c in cells:
        r = c.result
        w.writerow([c.row, c.base, c.treated, c.sparse_lift, c.dense_lift, r.diff,
                    r.diff_ci_low, r.diff_ci_high, r.p_value, c.p_adjusted, r.n,
                    r.alternative, r.note])
    return out.getvalue()


def register(app: typer.Typer) -> None:
    """Add ``lift`` to the ``study`` sub-app (``app`` is the root app, already holding it)."""
    from sparseflow.cli.study_cmd import study_app

    del app
    study_app.command("lift")(lift)
