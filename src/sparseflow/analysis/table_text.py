"""Words and numbers of the p-value table: cell texts, caption, verdicts and summary sentences.

Pure functions over a :class:`~sparseflow.analysis.tables.PValueTable` (no I/O); the console
(rich), markdown and the HTML report all take their text from here, so they say the same thing.

A cell shows three things: the p-value (after the table's correction), the mean difference
**sparse − dense** in the metric's units with its bootstrap CI, and n (pairs, plus pairs dropped
for a missing value and diverged runs, when any). Accuracies are fractions in the store and are
shown in percentage points ("pts"); every other metric in its own units.

**Verdicts** (:func:`verdict`) never claim more than the numbers show: a cell is "sparse better"
or "dense better" only when the CI of sparse − dense excludes 0 on that side and, when H1 of the
test points that way, the corrected p ≤ alpha too; when the test cannot speak for that side
(H1 sparse better but dense ahead) the CI alone decides. A cell without a CI (non-finite values,
e.g. a diverged loss) takes its side from a significant test only. Everything else is "no clear
difference", with the reason (CI includes 0, p > alpha, test and CI disagree).

**Sides.** Every text names the two compared sides by the table's ``sides``: ("sparse",
"dense") for the paper's table, ("A", "baseline") for a method-vs-baseline table
(``pvalue_table(..., baseline=(axis, value))``), whose caption says what A and the baseline are.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # types only: tables imports this module
    from sparseflow.analysis.stats import TestResult
    from sparseflow.analysis.tables import PValueCell, PValueTable

MINUS = "\u2212"  # a real minus sign: "−9.2", not a hyphen
SPARSE, DENSE, UNCLEAR, UNTESTED = "sparse better", "dense better", "no clear difference", \
    "not tested"
TEST_NAMES = {
    "wilcoxon": "Wilcoxon signed-rank test (paired)",
    "ttest": "paired t-test",
    "mannwhitney": "Mann-Whitney U test (unpaired)",
}
CORRECTION_NAMES = {"holm": "Holm", "bh": "Benjamini–Hochberg"}
#: How each format marks a significant cell (sparse ahead, dense ahead).
MARKS = {
    "console": ("bold green", "bold red"),
    "markdown": ("bold", "bold"),
    "html": ("bold on green", "bold on red"),
}


# Numbers -----------------------------------------------------------------------------------
def unit(metric: str) -> tuple[float, str]:
    """(scale, unit suffix) of ``metric``'s differences as shown: accuracies (fractions in the
    store) in percentage points, everything else in its own units (no suffix)."""
    return (100.0, " pts") if metric.endswith("accuracy") else (1.0, "")


def unit_words(metric: str) -> str:
    """The unit of shown differences in words, for captions."""
    if metric.endswith("accuracy"):
        return "percentage points (pts)"
    return f"{metric} units"


def signed(value: float, decimals: int) -> str:
    """``value`` with an explicit sign (real minus), ``decimals`` places; 0 unsigned; ±inf."""
    if math.isnan(value):
        return "n/a"
    if math.isinf(value):
        return f"{'+' if value > 0 else MINUS}inf"
    text = f"{abs(value):.{decimals}f}"
    if float(text) == 0:
        return text
    return f"{'+' if value > 0 else MINUS}{text}"


def decimals_for(diff: float, low: float, high: float) -> int:
    """Decimal places showing 2 significant digits of the larger of |diff| and half the CI's
    width: the precision follows the uncertainty, so a CI of ±2 does not print 0.0123."""
    half = (high - low) / 2 if math.isfinite(low) and math.isfinite(high) else 0.0
    scale = max((abs(x) for x in (diff, half) if math.isfinite(x)), default=0.0)
    if scale == 0:
        return 1
    return min(6, max(0, 1 - math.floor(math.log10(scale))))


def gap_parts(result: TestResult, metric: str) -> tuple[str, str]:
    """("−9.2 pts", "[−11.3, −7.1]"): sparse − dense in the metric's shown units and its CI
    ("" where there is none); ("", "") when there is no difference to show (no pairs)."""
    scale, suffix = unit(metric)
    diff, low, high = (scale * x for x in (result.diff, result.diff_ci_low, result.diff_ci_high))
    if math.isnan(diff):
        return "", ""
    places = decimals_for(diff, low, high)
    ci = ""
    if math.isfinite(low) and math.isfinite(high):
        ci = f"[{signed(low, places)}, {signed(high, places)}]"
    return f"{signed(diff, places)}{suffix}", ci


def gap_text(result: TestResult, metric: str) -> str:
    """"−9.2 pts [−11.3, −7.1]" (no CI part where there is none; "" with no pairs)."""
    return " ".join(x for x in gap_parts(result, metric) if x)


# Cell texts --------------------------------------------------------------------------------
def cell_text(cell: PValueCell, digits: int = 3) -> str:
    """The p shown in a table cell: the corrected p with ``digits`` decimals, or why there is
    none: "–" (no pairs), "n<k" (too few pairs to test), "n/a"."""
    res = cell.result
    if res.n == 0:
        return "–"
    if math.isnan(cell.p_adjusted):
        return f"n<{res.min_n}" if res.n < res.min_n else "n/a"
    return f"{cell.p_adjusted:.{digits}f}"


def p_text(cell: PValueCell, digits: int = 3) -> str:
    """"p = 0.982", "p < 0.001", or :func:`cell_text`'s reason when the cell has no p."""
    if math.isnan(cell.p_adjusted):
        return cell_text(cell, digits)
    if 0 < cell.p_adjusted < 10**-digits:
        return f"p < {10**-digits:.{digits}f}"
    return f"p = {cell.p_adjusted:.{digits}f}"


def n_text(cell: PValueCell) -> str:
    """"n=9", then ", 1 dropped" (pairs with a missing value) and ", 2 div." when any."""
    parts = [f"n={cell.result.n}"]
    if cell.result.n_dropped:
        parts.append(f"{cell.result.n_dropped} dropped")
    if cell.diverged:
        parts.append(f"{cell.diverged} div.")
    return ", ".join(parts)


def diverged_text(cell: PValueCell, sides: Sequence[str] = ("sparse", "dense")) -> str:
    """"3 sparse, 1 dense diverged" (only the sides that have any), or "" for none."""
    parts = [f"{n} {kind}" for n, kind in ((cell.diverged_sparse, sides[0]),
                                            (cell.diverged_dense, sides[1])) if n]
    return f"{', '.join(parts)} diverged" if parts else ""


def cell_notes(cell: PValueCell, sides: Sequence[str] = ("sparse", "dense")) -> str:
    """The cell's notes (dropped values, unmatched runs, ...) and diverged runs, or ""."""
    return "; ".join(x for x in (cell.result.note, diverged_text(cell, sides)) if x)


# Verdicts ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Verdict:
    """What a cell shows: ``word`` ("sparse better", "dense better" — or the table's own side
    names —, ``UNCLEAR`` or ``UNTESTED``), why, and ``lead``: +1 when the first side is
    better, −1 the second, 0 neither."""

    word: str
    reason: str
    lead: int = 0

    @property
    def text(self) -> str:
        """"dense better", or "no clear difference (CI includes 0)" (the reason when unclear)."""
        return self.word if self.lead else f"{self.word} ({self.reason})"


def better_words(sides: Sequence[str] = ("sparse", "dense")) -> tuple[str, str]:
    """("sparse better", "dense better") for the sides' names."""
    return f"{sides[0]} better", f"{sides[1]} better"


def significant_side(cell: PValueCell) -> int:
    """+1 when the cell is significant with sparse ahead, −1 with dense ahead, 0 otherwise.
    One-sided tests are significant only towards their H1; two-sided by the effect's sign
    (the statistic's direction: rank-biserial, d_z)."""
    if not cell.significant:
        return 0
    alt = cell.result.alternative
    if alt != "two-sided":
        return 1 if alt == "greater" else -1
    effect = cell.result.effect_size
    lead = effect if math.isfinite(effect) and effect != 0 else cell.result.mean_diff
    return 1 if lead > 0 else -1 if lead < 0 else 0


def verdict(cell: PValueCell, alpha: float, sides: Sequence[str] = ("sparse", "dense")
            ) -> Verdict:
    """The cell's verdict by its CI and its corrected p (rules in the module docstring), in
    the words of ``sides``."""
    res = cell.result
    if math.isnan(cell.p_adjusted):
        return Verdict(UNTESTED, _untested_reason(res))
    sig = significant_side(cell)
    first, second = better_words(sides)
    words = {1: first, -1: second}
    if not (math.isfinite(res.ci_low) and math.isfinite(res.ci_high)):
        if sig:
            return Verdict(words[sig], f"p ≤ {alpha}; no CI", sig)
        return Verdict(UNCLEAR, f"p > {alpha}; no CI")
    side = 1 if res.ci_low > 0 else -1 if res.ci_high < 0 else 0  # better-oriented CI
    if side == 0:
        return Verdict(UNCLEAR, "CI includes 0")
    if sig == -side:
        return Verdict(UNCLEAR, "the test and the CI disagree")
    tested = {"greater": (1,), "less": (-1,), "two-sided": (1, -1)}[res.alternative]
    if side in tested and not sig:
        return Verdict(UNCLEAR, f"CI excludes 0 but p > {alpha}")
    return Verdict(words[side], "CI excludes 0" + (f", p ≤ {alpha}" if sig else ""), side)


def _untested_reason(res: TestResult) -> str:
    what = "runs" if res.test == "mannwhitney" else "pairs"
    if res.n == 0:
        return f"no {what}"
    if res.n < res.min_n:
        return f"too few {what}: n={res.n} < {res.min_n}"
    return "p undefined"


# Caption and summary -----------------------------------------------------------------------
def sides_of(table: PValueTable) -> tuple[str, str]:
    """The names of the table's two compared sides (("sparse", "dense") by default)."""
    a, b = getattr(table, "sides", ("sparse", "dense"))
    return a, b


def difference(table: PValueTable) -> str:
    """"sparse − dense" (or "A − baseline"): what a cell's difference is."""
    a, b = sides_of(table)
    return f"{a} {MINUS} {b}"


def _h1(table: PValueTable) -> str:
    """"sparse > dense" etc. in the metric's direction (for a loss, better is <)."""
    a, b = sides_of(table)
    better, worse = (">", "<") if table.higher_is_better else ("<", ">")
    return {"greater": f"{a} {better} {b}", "less": f"{a} {worse} {b}",
            "two-sided": f"{a} ≠ {b}"}[table.alternative]


def _p_meaning(alternative: str, sides: Sequence[str] = ("sparse", "dense")) -> str:
    a, b = sides
    if alternative == "greater":
        return (f"p is the chance of a gap at least this favourable to {a} if {a} were not "
                f"better: p near 0 is evidence that {a} beats {b}; p near 1: {b} is ahead.")
    if alternative == "less":
        return (f"p is the chance of a gap at least this favourable to {b} if {a} were not "
                f"worse: p near 0 is evidence that {b} beats {a}; p near 1: {a} is ahead.")
    return (f"p is the chance of a gap at least this large, either way, if {a} and {b} were "
            f"alike: p near 0 is evidence that they differ (the sign of {a} − {b} says which "
            "is ahead); p near 1: no sign of a difference.")


def _marks(table: PValueTable, style: str) -> str:
    good, bad = MARKS[style]
    a = table.alpha
    first, second = sides_of(table)
    if table.alternative == "two-sided":
        if good == bad:
            return f"{good}: p ≤ {a} (the sign of {first} − {second} says who is ahead)."
        return f"{good}: p ≤ {a} with {first} ahead; {bad}: p ≤ {a} with {second} ahead."
    if table.alternative == "greater":
        return f"{good}: p ≤ {a}, evidence that {first} beats {second}."
    return f"{bad}: p ≤ {a}, evidence that {second} beats {first}."


def _what_is_compared(table: PValueTable) -> list[str]:
    """For a method-vs-baseline table: one sentence saying what A and the baseline are; for a
    table under a select rule, one saying that only the chosen runs are compared."""
    out = []
    base = getattr(table, "baseline", None)
    if base is not None:
        axis, value = base
        out.append(f"A: the sparse runs of each row's {axis}; baseline: the sparse runs of "
                   f"{axis}={value}; paired on dense width, seed and every other axis (A vs "
                   "baseline, not sparse vs dense).")
    rule = getattr(table, "select", None)
    if rule is not None:
        a, b = sides_of(table)
        out.append(f"Only runs chosen by validation are compared: per group, the {rule.axis} "
                   f"with the best {rule.metric}, chosen for {a} and {b} apart, so a pair's "
                   f"two runs may have different {rule.axis} (see the selection below).")
    return out


def caption_lines(table: PValueTable, style: str = "console") -> list[str]:
    """What was tested; what p means under the table's alternative; what a cell shows; what
    bold/colour mean in ``style`` (``"console"``, ``"markdown"`` or ``"html"``)."""
    cells = [table.cells[(r, c)] for r in table.row_values for c in table.col_values]
    ns = [c.result.n for c in cells if not math.isnan(c.result.p_value)]
    what = "runs in the smaller group" if table.test == "mannwhitney" else "pairs"
    n_range = "no cell could be tested"
    if ns:
        span = str(min(ns)) if min(ns) == max(ns) else f"{min(ns)}–{max(ns)}"
        n_range = f"n = {span} {what} per cell"
    corr = "no correction"
    if table.correction != "none":
        name = CORRECTION_NAMES[table.correction]
        corr = f"{name} correction ({table.correction}) across the {len(ns)} tested cells"
    sided = "two-sided" if table.alternative == "two-sided" else "one-sided"
    direction = "higher" if table.higher_is_better else "lower"
    after = " (after the correction)" if table.correction != "none" else ""
    pct = f"{100 * table.confidence:g}%"
    return [
        *_what_is_compared(table),
        f"{TEST_NAMES[table.test]}, {sided}, H1: {_h1(table)} on {table.metric} ({direction} "
        f"is better); {corr}; {n_range}.",
        _p_meaning(table.alternative, sides_of(table)),
        f"Each cell: p{after}; {difference(table)}, the mean difference of {table.metric} in "
        f"{unit_words(table.metric)}, with its {pct} bootstrap CI in brackets; n = {what} "
        f"(dropped: {'runs' if table.test == 'mannwhitney' else 'pairs'} with a missing value; "
        "div.: diverged runs).",
        _marks(table, style),
    ]


def _where(table: PValueTable, cell: PValueCell) -> str:
    return f"{table.row_axis}={cell.row} / {table.col_axis}={cell.col}"


def _count(n: int) -> str:
    return str(n) if n else "none"


def summary_lines(table: PValueTable) -> list[str]:
    """Plain sentences computed from the cells: the verdict counts, the largest gap, one line
    per row value (when there are several rows and columns) and the cells not tested."""
    cells = [table.cells[(r, c)] for r in table.row_values for c in table.col_values]
    sides = sides_of(table)
    verdicts = {(c.row, c.col): verdict(c, table.alpha, sides) for c in cells}
    tested = [c for c in cells if verdicts[(c.row, c.col)].word != UNTESTED]
    untested = [c for c in cells if verdicts[(c.row, c.col)].word == UNTESTED]
    if not tested:
        return [f"No cell could be tested ({_untested_reasons(untested, verdicts)})."]
    count = {w: sum(verdicts[(c.row, c.col)].word == w for c in tested)
             for w in (*better_words(sides), UNCLEAR)}  # fmt: skip
    ranked = sorted(count, key=lambda w: -count[w])  # the most common verdict first
    first, *rest = ranked
    lines = [
        f"{first} in {count[first]} of {len(tested)} tested cells, "
        + ", ".join(f"{w} in {_count(count[w])}" for w in rest)
        + f" (better: the {100 * table.confidence:g}% CI of {difference(table)} excludes 0, and "
        f"p ≤ {table.alpha} when H1 points that way)."
    ]
    lines[0] = lines[0][0].upper() + lines[0][1:]
    finite = [c for c in tested if math.isfinite(c.result.diff)]
    if finite:
        big = max(finite, key=lambda c: abs(c.result.diff))
        lines.append(f"Largest gap: {gap_text(big.result, table.metric)} at {_where(table, big)}; "
                     f"{verdicts[(big.row, big.col)].text}.")
    if len(table.row_values) > 1 and len(table.col_values) > 1:
        lines += [_row_line(table, r, verdicts) for r in table.row_values]
    if untested:
        shown = "; ".join(f"{_where(table, c)} ({verdicts[(c.row, c.col)].reason})"
                          for c in untested[:4])
        more = f"; and {len(untested) - 4} more" if len(untested) > 4 else ""
        lines.append(f"Not tested: {shown}{more}.")
    return [line for line in lines if line]


def _row_line(table: PValueTable, row: Any, verdicts: dict[tuple[Any, Any], Verdict]) -> str:
    """"optim.name=adam: dense better at NR (−9.2 pts), BN (−3.9 pts); no clear difference (CI
    includes 0) at DA (+0.1 pts)." over the row's tested cells ("" when none was tested)."""
    groups: dict[str, list[str]] = {}
    for col in table.col_values:
        cell, v = table.cells[(row, col)], verdicts[(row, col)]
        if v.word != UNTESTED:
            gap = gap_parts(cell.result, table.metric)[0]
            groups.setdefault(v.text, []).append(f"{col} ({gap})" if gap else str(col))
    if not groups:
        return ""
    parts = [f"{word} at {', '.join(where)}" for word, where in groups.items()]
    return f"{table.row_axis}={row}: " + "; ".join(parts) + "."


def _untested_reasons(cells: Sequence[PValueCell], verdicts: dict[tuple[Any, Any], Verdict]
                      ) -> str:
    reasons = dict.fromkeys(verdicts[(c.row, c.col)].reason for c in cells)
    return "; ".join(reasons) or "no cells"
