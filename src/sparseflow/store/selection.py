"""Selection by validation: which run of each group of a tuned axis the tests compare.

A study spec's ``select: {axis: optim.lr, metric: val_accuracy}`` trains every value of the axis
and keeps, in each **selection group**, the one run whose validation metric is best. A group is
a run's whole identity but the select axis, per kind: the sparse (or dense) runs of one dense
width, seed and value of every other swept axis (``variant`` included), which differ only in the
select axis. Sparse and dense groups choose separately, so each side of an SC-SDC pair is
compared at its own best rate (the point: a rate tuned for dense networks need not suit sparse
ones). Only validation decides; the test set is read later, to compare the chosen runs.

The rule, used by the export (``selected``, ``pair_id``), the p-value table, the report and the
plan's power check:

- the metric is the run's final validation metric as its summary holds it (the final weights',
  which with early stopping and ``restore_best`` are the best epoch's); ``val_accuracy``: higher
  is better, ``val_loss``: lower is better;
- a missing or non-finite metric, or a run that diverged, counts as the worst there is;
- ties go to the first value in the axis's order (the spec's);
- a group in which some value of the axis has no finished run is **incomplete**: nothing is
  chosen there (a partial study never reports a premature choice), and its pair is not tested.

Everything here works on plain mappings (an export row, or the part of a run record the export
reads), as :mod:`sparseflow.store.pairing` does.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sparseflow.store.pairing import freeze

#: The metrics a selection may use → whether higher is better.
SELECT_METRICS: dict[str, bool] = {"val_accuracy": True, "val_loss": False}
#: What a group's runs share besides every swept axis but the select axis.
GROUP_ON: tuple[str, ...] = ("kind", "dense_width", "seed")


def is_finished(row: Mapping[str, Any]) -> bool:
    """Whether a run row counts as finished (a row without a status is taken as finished)."""
    return row.get("status") in (None, "finished")


def is_diverged(row: Mapping[str, Any]) -> bool:
    """Whether a run row is marked diverged (the export's ``diverged`` column; CSV text too)."""
    flag = row.get("diverged")
    if isinstance(flag, str):
        return flag.strip().lower() in ("true", "1")
    return bool(flag) and not (isinstance(flag, float) and math.isnan(flag))


@dataclass(frozen=True)
class SelectRule:
    """Which axis is tuned away by validation, by which metric.

    ``values``: the axis's values in the spec's order. They break ties (the first wins) and say
    what a complete group holds: a group missing a run of one of them is incomplete, also when
    that run is absent from the rows. Values met in the rows but not listed come after them.
    """

    axis: str
    metric: str = "val_accuracy"
    values: tuple[Any, ...] = ()

    def __post_init__(self) -> None:
        if self.metric not in SELECT_METRICS:
            raise ValueError(f"unknown selection metric {self.metric!r}; metrics: "
                             f"{', '.join(SELECT_METRICS)}")

    @property
    def higher_is_better(self) -> bool:
        """Whether a larger metric is better (accuracy) or a smaller one (loss)."""
        return SELECT_METRICS[self.metric]

    def text(self) -> str:
        """The rule in one sentence, for captions and reports."""
        best = "highest" if self.higher_is_better else "lowest"
        order = ", ".join(value_label(v) for v in self.values)
        ties = f" in the order {order}" if order else ""
        return (f"{self.axis} is chosen by validation: for each kind (sparse, dense), dense "
                f"width, seed and value of every other axis, the {self.axis} whose run has the "
                f"{best} {self.metric} (a missing value or a diverged run counts as worst; ties "
                f"go to the earlier value{ties}); a group where some {self.axis} run has not "
                "finished chooses nothing and is not tested; the test set only compares the "
                "chosen runs")


def value_label(value: Any) -> str:
    """An axis value as text (``0.001``, ``adam``, ``true``)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def rule_from_spec(spec: Mapping[str, Any] | None) -> SelectRule | None:
    """The :class:`SelectRule` of a study spec as the store keeps it (a dict with ``select``
    and ``axes``), or None when it has no ``select``."""
    select = (spec or {}).get("select")
    if not select:
        return None
    axis = str(select["axis"])
    values = tuple(freeze(v) for v in ((spec or {}).get("axes") or {}).get(axis, ()))
    return SelectRule(axis, str(select.get("metric") or "val_accuracy"), values)


@dataclass(frozen=True)
class Group:
    """One selection group: its ``kind``, the values it shares (``key``: dense width, seed and
    every other axis → value), its rows (indices, in the axis's order), the chosen row (None
    when incomplete) and the axis values without a finished run (``missing``)."""

    kind: str
    key: Mapping[str, Any]
    members: tuple[int, ...]
    chosen: int | None
    missing: tuple[Any, ...] = ()

    @property
    def complete(self) -> bool:
        """Whether every value of the axis has a finished run (so a choice was made)."""
        return self.chosen is not None


@dataclass(frozen=True)
class Selection:
    """The groups of a set of rows under one :class:`SelectRule`, in order of first row."""

    rule: SelectRule
    groups: tuple[Group, ...]

    def selected(self) -> frozenset[int]:
        """Indices of the chosen rows (one per complete group)."""
        return frozenset(g.chosen for g in self.groups if g.chosen is not None)

    def incomplete(self) -> tuple[Group, ...]:
        """The groups that chose nothing (some value of the axis without a finished run)."""
        return tuple(g for g in self.groups if g.chosen is None)


def score(row: Mapping[str, Any], rule: SelectRule) -> float:
    """A row's selection score, higher = better: the metric (negated for a loss), or −inf
    for a missing or non-finite metric or a diverged run."""
    raw = row.get(rule.metric)
    try:
        value = float(raw) if raw is not None else math.nan
    except (TypeError, ValueError):
        value = math.nan
    if not math.isfinite(value) or is_diverged(row):
        return -math.inf
    return value if rule.higher_is_better else -value


def _order(rule: SelectRule, rows: Sequence[Mapping[str, Any]], members: list[int]) -> list[Any]:
    """The axis values of a group in tie order: the rule's, then any others the rows hold."""
    met = [freeze(rows[i].get(rule.axis)) for i in members]
    return list(dict.fromkeys([*rule.values, *met]))


def _choose(rule: SelectRule, rows: Sequence[Mapping[str, Any]], members: list[int]
            ) -> tuple[int | None, tuple[Any, ...], tuple[int, ...]]:
    """(the chosen row or None, the values without a finished run, the members in axis
    order) of one group."""
    values = _order(rule, rows, members)
    by_value: dict[Any, int] = {}
    for i in members:
        value = freeze(rows[i].get(rule.axis))
        if is_finished(rows[i]):
            by_value.setdefault(value, i)  # a duplicate run of one value: the first counts
    ordered = tuple(sorted(members, key=lambda i: values.index(freeze(rows[i].get(rule.axis)))))
    missing = tuple(v for v in values if v not in by_value)
    if missing:
        return None, missing, ordered
    best: int | None = None
    for value in values:  # strictly better replaces: a tie keeps the earlier value
        i = by_value[value]
        if best is None or score(rows[i], rule) > score(rows[best], rule):
            best = i
    return best, (), ordered


def select(rows: Sequence[Mapping[str, Any]], rule: SelectRule, axes: Sequence[str]
           ) -> Selection:
    """Group ``rows`` by kind, dense width, seed and ``axes`` (the select axis left out if
    listed) and choose one row per complete group by ``rule`` (see the module docstring).

    Rows of another kind take no part; a missing key reads as None (a dense run's sparse-only
    axes), so those rows still group together.
    """
    others = [a for a in axes if a != rule.axis and a not in GROUP_ON]
    keyed: dict[tuple[Any, ...], list[int]] = {}
    for i, row in enumerate(rows):
        if row.get("kind") not in ("sparse", "dense"):
            continue
        key = tuple(freeze(row.get(k)) for k in (*GROUP_ON, *others))
        keyed.setdefault(key, []).append(i)
    groups = []
    for key, members in keyed.items():
        chosen, missing, ordered = _choose(rule, rows, members)
        groups.append(Group(kind=key[0], key=dict(zip((*GROUP_ON[1:], *others), key[1:],
                                                      strict=True)),
                            members=ordered, chosen=chosen, missing=missing))
    return Selection(rule, tuple(groups))
