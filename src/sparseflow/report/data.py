"""What a report needs from a study directory, read once from its store.

:func:`load_study` reads the study (spec, export rows, counts); :func:`choose_axes` and
:func:`choose_cell` turn the command line's ``--rows/--cols/--cell`` into checked keys and
values; :func:`summary_items` is the report's summary. Statistics (p-values, τ) come only from
:mod:`sparseflow.analysis`; this module only selects and counts.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from sparseflow.analysis import PValueTable
from sparseflow.analysis.tables import default_axes, is_diverged
from sparseflow.report.errors import ReportError
from sparseflow.store import StoreError, StudyStore
from sparseflow.store.export import METRICS
from sparseflow.store.pairing import freeze, sparse_only_axes
from sparseflow.store.scope import plan_scope
from sparseflow.utils.atomic import read_json
from sparseflow.utils.fmt import human_duration

#: Keys that are no swept axis but may still be a table's rows or columns (as `study tests`).
PLAIN_KEYS: tuple[str, ...] = ("dense_width", "seed")


def label(value: Any) -> str:
    """How an axis value is written in tables, legends and ``--cell`` (JSON for non-strings:
    ``true``, ``0.001``, ``[1, 2]``)."""
    if isinstance(value, str):
        return value
    try:
        return json.dumps(value)
    except TypeError:
        return str(value)


@dataclass(frozen=True)
class StudyData:
    """A study as the report reads it.

    Attributes:
        name: the study's name. spec: its spec (as stored by ``study run``).
        axes: swept key → values in spec order; ``variant`` (the spec's ``variants``) last.
        rows: every run as a ``study export`` row. counts: status → number of runs.
        summaries: the ``summary.json`` of every finished run, in plan order.
    """

    directory: Path
    name: str
    spec: dict[str, Any]
    axes: dict[str, list[Any]]
    rows: list[dict[str, Any]]
    counts: dict[str, int]
    summaries: list[dict[str, Any]] = field(default_factory=list)
    created_at: str = ""
    updated_at: str = ""

    @property
    def finished(self) -> list[dict[str, Any]]:
        """The rows of finished runs."""
        return [r for r in self.rows if r.get("status") == "finished"]

    @cached_property  # read once per run row by the figures
    def sparse_only(self) -> tuple[str, ...]:
        """The swept axes no dense run carries (``sparsity.*``): a dense twin is shared by
        every value of them (:mod:`sparseflow.store.pairing`)."""
        return sparse_only_axes(self.rows, list(self.axes))

    def belongs(self, row: Mapping[str, Any], key: str, value: Any) -> bool:
        """Whether a run row counts under ``key`` = ``value``: its own value, or any value of a
        sparse-only axis for a dense run (it is the twin of every one of them)."""
        if row.get("kind") == "dense" and key in self.sparse_only:
            return True
        return freeze(row.get(key)) == value

    def widths(self) -> list[int]:
        """The dense widths of the finished runs, ascending."""
        return sorted({int(r["dense_width"]) for r in self.finished})

    def values(self, key: str) -> list[Any]:
        """The values of ``key`` in display order: spec order for a swept axis, else sorted."""
        if key in self.axes:
            return [freeze(v) for v in self.axes[key]]
        return sorted({freeze(r.get(key)) for r in self.finished}, key=lambda v: (v is None, v))


def load_study(directory: str | Path, all_runs: bool = False) -> StudyData:
    """Read a study directory's store (the latest plan's runs, or ``all_runs``; a note on
    stderr when they differ); :class:`ReportError` when there is no study in it or no run has
    finished yet."""
    directory = Path(directory)
    try:
        with StudyStore(directory, readonly=True) as store:
            info = store.study_info()
            only, note = plan_scope(store, all_runs)
            rows, counts = store.results(only), store.counts()
            if note:
                print(note, file=sys.stderr)
            summaries = [r.summary for r in store.runs("finished") if r.summary]
    except StoreError as exc:
        raise ReportError(str(exc)) from None
    if info is None:
        raise ReportError(f"no study at {directory}; run `sparseflow study run` first")
    spec = info.get("spec") or {}
    axes = {str(k): list(v) for k, v in (spec.get("axes") or {}).items()}
    axes["variant"] = list(spec.get("variants") or ["NR"])
    data = StudyData(directory, str(info.get("name", "?")), spec, axes, rows, counts, summaries,
                     str(info.get("created_at", "")), str(info.get("updated_at", "")))
    if not data.finished:
        raise ReportError(f"no finished runs in {directory} ({sum(counts.values())} planned); "
                          "run `sparseflow study run` first")
    return data


def check_metric(metric: str) -> str:
    """``metric`` if it is a per-run number of the export; else ReportError naming the valid."""
    if metric not in METRICS:
        raise ReportError(f"unknown --metric {metric!r}; metrics: {', '.join(METRICS)}")
    return metric


def choose_axes(study: StudyData, rows: str | None, cols: str | None) -> tuple[str, str]:
    """The table's (row key, column key), defaulting as ``study tests`` does: the first swept
    axis × ``variant`` (``variant`` × ``dense_width`` when variant is the only axis)."""
    keys = list(study.axes)
    d_rows, d_cols = default_axes(keys, {k: len(study.values(k)) for k in keys})
    rows = rows or d_rows
    cols = cols or (d_cols if rows == d_rows else
                    ("variant" if rows != "variant" else "dense_width"))
    for flag, key in (("--rows", rows), ("--cols", cols)):
        if key not in study.axes and key not in PLAIN_KEYS:
            raise ReportError(f"{flag} {key!r} is not a swept axis of this study; axes: "
                              f"{', '.join([*keys, *PLAIN_KEYS])}")
    if rows == cols:
        raise ReportError(f"--rows and --cols are both {rows!r}; choose two different axes")
    return rows, cols


def figure_keys(study: StudyData, rows: str, cols: str) -> tuple[str | None, str]:
    """(panel key, colour key) of the width figures, whose x axis is the dense width.

    The colour follows the table's columns and the panels its rows, as in the paper (one panel
    per optimizer, one colour per variant); a plain key (dense width, seed) cannot be a colour
    or a panel, so then the colour is ``variant`` and a single panel pools everything else.
    """
    color = cols if cols in study.axes else "variant"
    panel = rows if rows in study.axes and rows != color else None
    return panel, color


def parse_cell(study: StudyData, given: Sequence[str]) -> dict[str, Any]:
    """The cell named by ``--cell KEY=VALUE`` options; unnamed axes take their first value.

    Values are matched by their label (see :func:`label`), e.g. ``optim.lr=0.001``.
    """
    chosen: dict[str, Any] = {}
    for item in given:
        key, sep, text = item.partition("=")
        key, text = key.strip(), text.strip()
        if not sep or not key:
            raise ReportError(f"--cell takes KEY=VALUE (e.g. variant=BN), got {item!r}")
        if key not in study.axes:
            raise ReportError(f"unknown --cell key {key!r}; swept axes: {', '.join(study.axes)}")
        values = study.values(key)
        found = [v for v in values if text in (label(v), str(v))]
        if not found:
            raise ReportError(f"--cell {key}={text!r} is not a value of the study; values: "
                              f"{', '.join(label(v) for v in values)}")
        chosen[key] = found[0]
    return chosen


def cell_runs(study: StudyData, cell: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Finished rows whose swept values equal ``cell`` on every key it names."""
    return [r for r in study.finished
            if all(study.belongs(r, k, v) for k, v in cell.items())]


def choose_cell(study: StudyData, given: Sequence[str]) -> dict[str, Any]:
    """The full cell (every swept axis → value) of the training-curves figure.

    Named values come from ``--cell``; the others default to the first value in spec order
    that has finished runs together with the named ones. A named cell without finished runs
    raises ReportError.
    """
    cell = parse_cell(study, given)
    for key in study.axes:
        if key in cell:
            continue
        options = [v for v in study.values(key) if cell_runs(study, {**cell, key: v})]
        if not options:
            break
        cell[key] = options[0]
    if not cell_runs(study, cell) or len(cell) < len(study.axes):
        shown = ", ".join(f"{k}={label(v)}" for k, v in cell.items())
        raise ReportError(f"no finished runs in the cell {shown}; choose another with --cell")
    return {k: cell[k] for k in study.axes}  # spec order, whatever the order of --cell


#: The per-update series of a dynamic-masker run, in its run directory (written by training;
#: the report reads the file, it does not import ``sparseflow.train``).
DST_FILE = "dst.json"


@dataclass(frozen=True)
class RunSeries:
    """One finished run's export ``row`` with its per-epoch ``metrics`` rows (keyed by
    ``epoch``, from 1) and its gradient-flow ``gradflow`` points (``epoch`` 0 = before the
    first update, the measures, ``per_layer``), as the store returns them; its ``summary``
    (``summary.json``: ``layer_densities`` of a sparse run's initial mask, ...) and, for a
    dynamic-masker run, ``dst`` (``dst.json``: the schedule and one record per mask update;
    None for every other run)."""

    row: dict[str, Any]
    metrics: list[dict[str, Any]]
    gradflow: list[dict[str, Any]]
    summary: dict[str, Any] = field(default_factory=dict)
    dst: dict[str, Any] | None = None


def _read_dst(run_dir: Path) -> dict[str, Any] | None:
    """``dst.json`` of one run directory, or None when the run has none (a static mask)."""
    path = run_dir / DST_FILE
    if not path.is_file():
        return None
    try:
        value = read_json(path)
    except (OSError, ValueError) as exc:
        raise ReportError(f"cannot read {path} ({exc}); remove the run directory to rerun "
                          "the run") from None
    if not isinstance(value, dict) or not isinstance(value.get("updates", []), list):
        raise ReportError(f"{path} is not a mask-update series (a JSON object with "
                          "'updates'); remove the run directory to rerun the run")
    return value


def load_series(study: StudyData, rows: Sequence[Mapping[str, Any]]) -> list[RunSeries]:
    """The series of each of ``rows`` (finished runs of ``study``), read in one store session,
    with each run's summary and its run directory's ``dst.json`` where there is one."""
    try:
        with StudyStore(study.directory, readonly=True) as store:
            summaries = {r.run_key: r.summary or {} for r in store.runs("finished")}
            return [RunSeries(dict(r), store.metrics(r["run_key"]), store.gradflow(r["run_key"]),
                              summaries.get(r["run_key"], {}),
                              _read_dst(store.runs_dir / r["run_key"]))
                    for r in rows]
    except StoreError as exc:
        raise ReportError(str(exc)) from None


def _datasets(summaries: Sequence[Mapping[str, Any]]) -> str:
    found: dict[str, None] = {}
    for s in summaries:
        ds = s.get("dataset") or {}
        sizes = "/".join(str(ds.get(k, "?")) for k in ("train", "val", "test"))
        found[f"{ds.get('name', '?')} (train/val/test {sizes})"] = None
    return "; ".join(found) or "unknown"


def _versions(summaries: Sequence[Mapping[str, Any]]) -> str:
    seen: dict[str, dict[str, None]] = {}
    for s in summaries:
        for pkg, ver in (s.get("versions") or {}).items():
            seen.setdefault(str(pkg), {})[str(ver)] = None
    # Runs recorded by different installs show every version met, so a mixed study is visible.
    return ", ".join(f"{pkg} {' / '.join(vers)}" for pkg, vers in seen.items()) or "unknown"


def _diverged(done: list[dict[str, Any]]) -> str:
    """How many finished runs diverged, by kind (each p-value cell counts its own)."""
    n = {k: sum(r.get("kind") == k and is_diverged(r) for r in done) for k in ("sparse", "dense")}
    return (f"{n['sparse']} sparse and {n['dense']} dense finished run(s) diverged (a non-finite "
            "training loss; ranked as the worst loss in loss tests)")


def summary_items(study: StudyData, table: PValueTable) -> list[tuple[str, str]]:
    """(label, text) lines of the report's summary."""
    c = study.counts
    done = study.finished
    secs = [float(r["duration_s"]) for r in done if r.get("duration_s") is not None]
    total = sum(secs)
    mean = total / len(secs) if secs else 0.0
    sparse = sorted({int(r["sparse_width"]) for r in done if r.get("sparse_width") is not None})
    axes = "; ".join(f"{k}: {', '.join(label(v) for v in vs)}" for k, vs in study.axes.items())
    epochs = sorted({int(r["epochs"]) for r in done if r.get("epochs") is not None})
    seeds = sorted({r["seed"] for r in done})
    matched = ", ".join(["dense width", "seed", *(a for a in table.axes
                                                   if a not in study.sparse_only)])
    if study.sparse_only:
        matched += (f" (each dense twin shared by every value of "
                    f"{', '.join(study.sparse_only)})")
    return [
        ("study", study.name),
        ("runs", f"{sum(c.values())} in the plan: {c['finished']} finished, {c['failed']} failed, "
                 f"{c['running']} running, {c['interrupted']} interrupted, "
                 f"{c['planned']} not started"),
        ("diverged", _diverged(done)),
        ("training time", f"{human_duration(total)} in total, {human_duration(mean)} per "
                          "finished run (mean)"),
        ("dataset", _datasets(study.summaries)),
        ("widths", f"sparse {', '.join(map(str, sparse)) or '–'}; dense "
                   f"{', '.join(map(str, study.widths()))}"),
        ("swept axes", axes),
        ("seeds", f"{len(seeds)} ({', '.join(map(str, seeds))})"),
        ("evaluated", evaluated_text(study.summaries)),
        ("epochs trained", "–".join(map(str, sorted({epochs[0], epochs[-1]}))) if epochs
                           else "–"),
        ("statistics", f"{table.test}, one-sided (H1: sparse better than dense); correction "
                       f"{table.correction}; α = {table.alpha}; pairs matched on {matched}"),
        ("software", _versions(study.summaries)),
        ("created", f"{study.created_at} (updated {study.updated_at})"),
    ]


#: Resolved ``train.eval_val`` / ``train.eval_test`` mode → when the series evaluates.
_EVAL_WHEN = {"epoch": "after every epoch", "end": "after the last epoch only",
              "never": "never in the series", "probes": "at the probe epochs and the last"}


def _eval_one(ev: Mapping[str, Any] | None) -> str:
    """One run's evaluation record as text; a run recorded before the record existed
    evaluated both splits after every epoch."""
    if not ev:
        return "validation and test after every epoch"
    return (f"validation {_EVAL_WHEN.get(ev.get('val'), ev.get('val'))}, test "
            f"{_EVAL_WHEN.get(ev.get('test'), ev.get('test'))}")


def evaluated_text(summaries: Sequence[Mapping[str, Any]]) -> str:
    """The report's line on what was evaluated when: the series' validation and test
    evaluations (with the mean count per run), then the final evaluation every run has."""
    if not summaries:
        return "–"
    groups: dict[str, list[Mapping[str, Any]]] = {}
    for s in summaries:
        groups.setdefault(_eval_one(s.get("evaluation")), []).append(s)
    parts = []
    for text, runs in groups.items():
        counts = [(len(ev["val_epochs"]), len(ev["test_epochs"])) for ev in
                  (r.get("evaluation") for r in runs) if ev]
        if counts:
            val = sum(c[0] for c in counts) / len(counts)
            test = sum(c[1] for c in counts) / len(counts)
            text += f" ({val:g} validation and {test:g} test evaluations per run)"
        if len(groups) > 1:
            text += f" [{len(runs)} runs]"
        parts.append(text)
    return "; ".join(parts) + "; then train, validation and test on each run's final weights"
