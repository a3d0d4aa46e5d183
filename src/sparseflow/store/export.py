"""The ``study export`` contract: one flat row per run, written as CSV or parquet.

Columns, in a stable order: the identity columns (:data:`IDENTITY`), one column per swept axis
(the dotted keys of the runs' cells, sorted), ``status``, ``selected`` (only in a study with a
``select`` rule: whether the rule chose the run, :mod:`sparseflow.store.selection`), the run's
results from its summary (:data:`RESULTS`; empty for a run that has not finished) and
:data:`TAIL`. ``selected`` is left out without a rule rather than left empty: a bool column
without any value would read as float64 from CSV but as object from parquet. :data:`COLUMN_DOCS`
describes each fixed column (the README's table is drawn from it).

Each fixed column has one type (:data:`TYPES`), written the same way to CSV and to parquet, so
that pandas reads both files with the same dtypes (``export_series.py`` adds the per-epoch and
per-probe-point tables, written by the same functions).
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from sparseflow.store.errors import StoreError
from sparseflow.store.pairing import match
from sparseflow.store.records import RunRecord
from sparseflow.store.selection import SelectRule, select
from sparseflow.utils.atomic import json_safe, write_output

COLUMN_DOCS: dict[str, str] = {
    "run_id": "config id of the run (hash of its canonical config; run_id in summary.json)",
    "run_key": "'<run_id>-s<seed>', the run directory name under runs/",
    "kind": "'sparse' or 'dense'",
    "sparse_width": "width of the sparse network of the run's SC-SDC pair (on a dense run: "
                    "its pair's; empty for a dense run without a partner)",
    "dense_width": "width of the dense network of the pair (a dense run's own width)",
    "seed": "replicate seed",
    "pair_id": "the run_key of the dense twin of the run's SC-SDC pair: the same on the dense "
               "run and on every sparse run paired with it (a dense twin is shared by every "
               "value of the sparse-only axes, e.g. sparsity.masker); matched as the p-value "
               "table matches: same dense width, seed and every axis the dense run carries; "
               "empty for a run without a partner. With a select rule only the selected runs "
               "pair (the select axis left out: each side at its chosen value)",
    "status": "one of planned, running, interrupted, finished, failed",
    "selected": "only in a study with a select rule: whether the run is the one its group "
                "(kind, dense width, seed, every other axis) chose by validation, and so "
                "compared in the tests; false for the other values and in an incomplete group",
    "test_accuracy": "final test accuracy (fraction, 0-1)",
    "test_loss": "final test cross-entropy",
    "val_accuracy": "final validation accuracy (fraction)",
    "val_loss": "final validation cross-entropy",
    "train_accuracy": "final training accuracy (fraction, eval mode)",
    "train_loss": "final training cross-entropy (eval mode)",
    "egf1": "Effective Gradient Flow, L1, averaged over probe points",
    "egf2": "Effective Gradient Flow, L2, averaged over probe points",
    "gf1": "L1 norm of all raw gradients, averaged over probe points",
    "gf2": "L2 norm of all raw gradients, averaged over probe points",
    "gf1_masked": "L1 norm of the masked gradients, averaged over probe points",
    "gf2_masked": "L2 norm of the masked gradients, averaged over probe points",
    "egf1_per_weight": "EGF L1 with each layer's norm divided by its active weights",
    "egf2_per_weight": "EGF L2 with each layer's norm divided by its active weights",
    "epochs": "epochs trained (fewer than the cap after early stopping)",
    "best_epoch": "epoch whose weights were kept (early stopping), else the last",
    "stopped_early": "whether early stopping ended the run",
    "diverged": "whether the run diverged (a non-finite training loss; false otherwise)",
    "density": "fraction of prunable weights active (1.0 for dense runs)",
    "active_weights": "number of active prunable weights (empty for dense runs)",
    "mask_updates": "dynamic sparse training: mask updates made (empty for a fixed mask)",
    "ever_active": "dynamic sparse training: fraction of prunable weights active at any time "
                   "in training (empty for a fixed mask)",
    "gradflow_points": "number of gradient-flow probe points reached (the averages skip "
                       "non-finite ones)",
    "duration_s": "training wall-clock seconds (summed over resumed parts)",
    "error": "the failure message of a failed run",
}
IDENTITY: tuple[str, ...] = ("run_id", "run_key", "kind", "sparse_width", "dense_width", "seed",
                             "pair_id")
RESULTS: tuple[str, ...] = (
    "test_accuracy", "test_loss", "val_accuracy", "val_loss", "train_accuracy", "train_loss",
    "egf1", "egf2", "gf1", "gf2", "gf1_masked", "gf2_masked", "egf1_per_weight",
    "egf2_per_weight", "epochs", "best_epoch", "stopped_early", "diverged", "density",
    "active_weights", "mask_updates", "ever_active", "gradflow_points",
)
TAIL: tuple[str, ...] = ("duration_s", "error")
#: The results a table or figure can compare: numbers per run (counts and flags left out).
METRICS: tuple[str, ...] = tuple(
    k for k in RESULTS
    if k not in ("epochs", "best_epoch", "stopped_early", "diverged", "density",
                 "active_weights", "gradflow_points")
)  # fmt: skip
FIXED = frozenset((*IDENTITY, "status", "selected", *RESULTS, *TAIL))
FORMATS: tuple[str, ...] = ("csv", "parquet")

#: The type of each fixed column: "int", "float", "bool" or "str" (axis columns have none:
#: their type is inferred from their values). Both formats write a column in its type, so an
#: export with no finished run keeps its parquet schema.
TYPES: dict[str, str] = {
    **dict.fromkeys(("run_id", "run_key", "kind", "pair_id", "status", "error"), "str"),
    **dict.fromkeys(("sparse_width", "dense_width", "seed", "epochs", "best_epoch",
                     "active_weights", "mask_updates", "gradflow_points"), "int"),
    **dict.fromkeys(("selected", "stopped_early", "diverged"), "bool"),
}
TYPES.update({c: "float" for c in FIXED if c not in TYPES})
#: What ``pandas.read_csv(path, dtype=CSV_READ_DTYPES)`` needs to read the text columns of any
#: export table as text in every case: a CSV cell has no type, and pandas reads a column
#: without any value (``error`` when no run failed) as float NaN, and a column of text that
#: looks like numbers (a run_id of decimal digits) as numbers. Parquet keeps the types.
CSV_READ_DTYPES: dict[str, str] = {c: "str" for c, kind in TYPES.items() if kind == "str"}
CSV_READ_DTYPES["layer"] = "str"


def axis_columns(records: Iterable[RunRecord]) -> list[str]:
    """The swept axes of ``records`` (union of their cell keys), sorted.

    An axis named like a fixed column (e.g. ``seed``) is left out: the fixed column wins.
    """
    return sorted({key for r in records for key in r.cell} - FIXED)


def _freeze(value: Any) -> Any:
    """A cell value as a dict key (lists and dicts as their JSON text)."""
    return json.dumps(value, sort_keys=True) if isinstance(value, dict | list) else value


def selected(records: Sequence[RunRecord], rule: SelectRule | None) -> frozenset[int] | None:
    """Indices of the records ``rule`` chooses (:func:`sparseflow.store.selection.select` over
    every record, whatever its status, so an unfinished run makes its group incomplete); None
    without a rule."""
    if rule is None:
        return None
    axes = axis_columns(records)
    rows = []
    for r in records:
        summary = r.summary if r.status == "finished" and r.summary else {}
        rows.append({"kind": r.kind, "dense_width": r.dense_width, "seed": r.seed,
                     "status": r.status, "diverged": bool(summary.get("diverged", False)),
                     rule.metric: summary.get(rule.metric),
                     **{a: r.cell.get(a) for a in axes}})  # select() freezes as the rule does
    return select(rows, rule, axes).selected()


def pairs(records: Sequence[RunRecord], rule: SelectRule | None = None,
          chosen: frozenset[int] | None = None) -> dict[str, tuple[RunRecord, RunRecord]]:
    """run_key → (dense twin, a sparse partner) of its SC-SDC pair, for every run that has one.

    The rule of :mod:`sparseflow.store.pairing` (the one the p-value table uses), here over
    every run whatever its status: a sparse run's twin is the dense run equal to it on the
    dense width, the seed and every axis the dense run carries (the cell, ``variant``
    included; the sparse-only axes, which no dense run carries, are left out). A dense run
    pairs with every such sparse run; its entry names the first of them. A key with more than
    one run of a kind pairs none of them (no partner can be chosen).

    With a select ``rule`` only the chosen runs pair (``chosen``: :func:`selected` of the
    records, computed here when not given), matched without the select axis: a sparse run and
    its twin may have chosen different values of it."""
    axes = axis_columns(records)
    keep = None
    if rule is not None:
        keep = selected(records, rule) if chosen is None else chosen
        axes = [a for a in axes if a != rule.axis]
    rows = [{"kind": r.kind, "dense_width": r.dense_width, "seed": r.seed,
             **{a: _freeze(r.cell.get(a)) for a in axes}}
            if keep is None or i in keep else {} for i, r in enumerate(records)]
    found: dict[str, tuple[RunRecord, RunRecord]] = {}
    for s, d in match(rows, axes).twin.items():
        sparse, dense = records[s], records[d]
        found[sparse.run_key] = (dense, sparse)
        found.setdefault(dense.run_key, (dense, sparse))
    return found


def identity(r: RunRecord, axes: Sequence[str],
             partner: tuple[RunRecord, RunRecord] | None) -> dict[str, Any]:
    """The identity columns and axis columns of run ``r`` (``partner``: the (dense twin, a
    sparse run) of its pair; the sparse run gives a dense run its ``sparse_width``)."""
    sparse_width = r.sparse_width
    if sparse_width is None and partner is not None:
        sparse_width = partner[1].sparse_width
    row: dict[str, Any] = {"run_id": r.config_id, "run_key": r.run_key, "kind": r.kind,
                           "sparse_width": sparse_width, "dense_width": r.dense_width,
                           "seed": r.seed,
                           "pair_id": None if partner is None else partner[0].run_key}
    row.update({axis: r.cell.get(axis) for axis in axes})
    return row


def result_rows(records: Sequence[RunRecord], rule: SelectRule | None = None
                ) -> list[dict[str, Any]]:
    """One flat dict per run, keys in column order (see the module docstring); ``rule``: the
    study's select rule (None: no ``selected`` column, and every run may pair)."""
    axes = axis_columns(records)
    chosen = selected(records, rule)
    partners = pairs(records, rule, chosen)
    rows: list[dict[str, Any]] = []
    for i, r in enumerate(records):
        summary = r.summary if r.status == "finished" and r.summary else {}
        row = identity(r, axes, partners.get(r.run_key))
        row["status"] = r.status
        if chosen is not None:
            row["selected"] = i in chosen
        row.update({key: summary.get(key) for key in RESULTS})
        row["diverged"] = bool(summary.get("diverged", False))
        row["duration_s"] = r.duration_s
        row["error"] = r.error
        rows.append(row)
    return rows


def result_columns(records: Sequence[RunRecord], rule: SelectRule | None = None) -> list[str]:
    """The column names of :func:`result_rows` of ``records`` (also when there are none)."""
    chosen = ["selected"] if rule is not None else []
    return [*IDENTITY, *axis_columns(records), "status", *chosen, *RESULTS, *TAIL]


def write_rows(rows: Sequence[dict[str, Any]], columns: Sequence[str], path: str | Path,
               fmt: str, types: dict[str, str] | None = None) -> Path:
    """Write ``rows`` to ``path`` as ``fmt`` ('csv' or 'parquet'): atomically, or through to
    a special file such as ``/dev/null`` (see :func:`sparseflow.utils.atomic.write_output`).

    ``types`` (default :data:`TYPES`) gives the type of the typed columns; every other column
    takes the type its values share (text when they share none).

    Raises:
        StoreError: an unknown format, or a failed write (naming the path and the reason).
    """
    fmt = fmt.lower()
    if fmt not in FORMATS:
        raise StoreError(f"unknown export format {fmt!r}; formats: {', '.join(FORMATS)}")
    types = TYPES if types is None else types
    data = (_csv_bytes(rows, columns, types) if fmt == "csv"
            else _parquet_bytes(rows, columns, types))
    try:
        return write_output(path, data)
    except OSError as exc:
        raise StoreError(f"cannot write {exc.filename or path}: {exc.strerror or exc}") from exc


#: A text cell starting with one of these is a formula to a spreadsheet (CSV injection).
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _cell_text(value: Any) -> Any:
    """A value as the csv module should see it: None → empty, a non-finite float → "inf",
    "-inf" or "nan", structures → JSON, text that a spreadsheet would run as a formula → the
    same text after a ``'`` (numbers, also negative ones, are written as they are)."""
    if value is None:
        return ""
    if isinstance(value, float) and not math.isfinite(value):
        return json_safe(value)
    if isinstance(value, dict | list | tuple):
        value = json.dumps(json_safe(value), sort_keys=True)
    if isinstance(value, str) and value.startswith(_FORMULA_START) and not _numeric(value):
        return "'" + value
    return value


def _numeric(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _csv_bytes(rows: Sequence[dict[str, Any]], columns: Sequence[str],
               types: dict[str, str]) -> bytes:
    # Typed columns are coerced as for parquet: an int stored as 3.0 is written "3" (pandas
    # would read "3.0" as a float), a float stored as 1 is written "1.0".
    buf = io.StringIO(newline="")
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow([_cell_text(_coerce(types[c], row.get(c)) if c in types else row.get(c))
                         for c in columns])
    return buf.getvalue().encode()


def _coerce(kind: str, value: Any) -> Any:
    """A value in its column's type ``kind`` (ints stored as 3.0 become 3); a float column
    keeps inf and NaN (Arrow holds them), another column has none (null)."""
    if value is None:
        return None
    if isinstance(value, float) and not math.isfinite(value):
        return value if kind == "float" else None
    if kind == "str":
        return str(value)
    if kind == "bool":
        return bool(value)
    if kind == "int":
        return int(value)
    return float(value)


def _parquet_bytes(rows: Sequence[dict[str, Any]], columns: Sequence[str],
                   types: dict[str, str]) -> bytes:
    try:
        import pyarrow as pa  # type: ignore[import-untyped]
        import pyarrow.parquet as pq  # type: ignore[import-untyped]
    except ImportError as exc:
        raise StoreError("parquet export needs pyarrow: pip install pyarrow "
                         "(or pip install sparseflow[parquet]), or use --format csv") from exc
    arrays = {}
    for col in columns:
        values = [row.get(col) for row in rows]
        if col in types:
            kind = {"str": pa.string(), "bool": pa.bool_(), "int": pa.int64(),
                    "float": pa.float64()}[types[col]]
            arrays[col] = pa.array([_coerce(types[col], v) for v in values], type=kind)
        else:
            arrays[col] = _axis_array(pa, values)
    sink = pa.BufferOutputStream()
    pq.write_table(pa.table(arrays), sink)
    return sink.getvalue().to_pybytes()


def _axis_array(pa: Any, values: list[Any]) -> Any:
    """An axis column: Arrow's inferred type, or text when the values do not share one."""
    values = [json.dumps(v, sort_keys=True) if isinstance(v, dict | list | tuple) else v
              for v in values]
    if all(v is None for v in values):
        return pa.array(values, type=pa.string())
    try:
        return pa.array(values)
    except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, ValueError):
        return pa.array([None if v is None else str(v) for v in values], type=pa.string())
