"""The durable run store of a study directory: ``DIR/study.sqlite``.

One process (the study driver) writes it; workers never touch it (they write run directories,
and the driver records what they produced). Every state change is one SQLite transaction, so a
SIGKILL at any moment leaves either the state before or the state after it: a run is never
recorded as finished without its metric rows, nor recorded twice. See ``schema.py`` for the
journal and sync settings, the read-only opening of readers and the detection of damage.

What a run directory says is checked before it is recorded (``rundir.py``): a summary of
another run or seed, or a metric series shorter than its epochs, is recorded as a failure.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from collections.abc import Collection, Iterable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from types import TracebackType
from typing import Any

from sparseflow.store import export as _export
from sparseflow.store import export_series as _series
from sparseflow.store.codec import dumps as _dumps
from sparseflow.store.codec import loads as _loads
from sparseflow.store.codec import now as _now
from sparseflow.store.codec import number as _number
from sparseflow.store.errors import StoreError, StudyMismatchError
from sparseflow.store.records import STATUSES, PlannedRun, RunRecord
from sparseflow.store.rundir import damage, mismatch, read_run_outputs
from sparseflow.store.schema import (
    SCHEMA_VERSION,
    check_integrity,
    checked_version,
    connect,
    corrupt,
    database_error,
    migrate,
)
from sparseflow.store.selection import SelectRule, rule_from_spec

DB_NAME, RUNS_DIR = "study.sqlite", "runs"
#: The tables ``study export --table`` writes (see :meth:`StudyStore.table`).
TABLES: tuple[str, ...] = ("runs", "metrics", "gradflow")
_PLAN_COLUMNS = ("run_key", "config_id", "seed", "kind", "sparse_width", "dense_width", "cell",
                 "config")
_RECORD_COLUMNS = (*_PLAN_COLUMNS, "status", "error", "started_at", "finished_at", "duration_s",
                   "summary", "attempts")
#: Readers check a store this large or smaller on every open; the driver checks every store.
READER_CHECK_MAX_BYTES = 256 * 2**20
_METRIC_COLUMNS = ("epoch", "train_loss", "train_accuracy", "val_loss", "val_accuracy",
                   "test_loss", "test_accuracy", "lr", "seconds")


class StudyStore:
    """The run store of a study directory (see the module docstring).

    Args:
        study_dir: the study directory; ``study.sqlite`` lives in it.
        create: create the directory and the store if missing; with False a missing store
            raises :class:`StoreError`.
        readonly: open without writing anything (implies ``create=False``); readers use it, so
            a finished study on a read-only file system can be read and no file is created.

    Opening checks the file's integrity (``schema.check_integrity``; readers skip it above
    :data:`READER_CHECK_MAX_BYTES`) and raises :class:`StoreCorruptError` for a damaged one.
    Usable from several threads of the driver (calls are serialized), never from a process
    forked after opening it: open one store per process that needs it.
    """

    def __init__(self, study_dir: str | Path, *, create: bool = True,
                 readonly: bool = False) -> None:
        self.study_dir = Path(study_dir)
        self.path = self.study_dir / DB_NAME
        self.runs_dir = self.study_dir / RUNS_DIR
        self.readonly = readonly
        missing = StoreError(f"no study at {self.study_dir}; run `sparseflow study run`")
        create = create and not readonly
        if not create and not self.path.is_file():
            raise missing
        if create:
            self.study_dir.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        self._pid = os.getpid()
        self._conn: sqlite3.Connection | None = connect(self.path, readonly=self.readonly)
        try:
            self._open(missing)
        except BaseException:
            self.close()
            raise

    def _open(self, missing: StoreError) -> None:
        conn = self._connection()
        if not self.readonly:
            migrate(conn, self.path)
        else:
            migrate_needed = checked_version(conn, self.path) != SCHEMA_VERSION
            if migrate_needed:  # empty, or older: only a writer may create or migrate
                raise missing
        if not self.readonly or self.path.stat().st_size <= READER_CHECK_MAX_BYTES:
            check_integrity(conn, self.path)

    # Transactions ----------------------------------------------------------------------------
    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            raise StoreError(f"the store of {self.study_dir} is closed")
        if os.getpid() != self._pid:
            raise StoreError(f"the store of {self.study_dir} was opened by process {self._pid} "
                             "and used in a forked child; open it in the process that uses it")
        return self._conn

    @contextmanager
    def _transaction(self, mode: str) -> Iterator[sqlite3.Connection]:
        """One transaction: IMMEDIATE for writes (takes the write lock up front, so it never
        fails half-way on a busy database), DEFERRED for a consistent read snapshot."""
        with self._lock:
            conn = self._connection()
            try:
                conn.execute(f"BEGIN {mode}")
                try:
                    yield conn
                    conn.execute("COMMIT")
                except BaseException:
                    if conn.in_transaction:
                        conn.execute("ROLLBACK")
                    raise
            except sqlite3.DatabaseError as exc:
                raise database_error(self.path, exc) from exc

    def _loads(self, text: Any, what: str) -> Any:
        """Decode stored JSON; a value that does not decode means a damaged file."""
        try:
            return _loads(text)
        except (TypeError, ValueError) as exc:
            raise corrupt(self.path, f"undecodable {what}: {exc}") from exc

    def _write(self) -> AbstractContextManager[sqlite3.Connection]:
        return self._transaction("IMMEDIATE")

    def _read(self) -> AbstractContextManager[sqlite3.Connection]:
        return self._transaction("DEFERRED")

    @staticmethod
    def _status(conn: sqlite3.Connection, run_key: str) -> str:
        row = conn.execute("SELECT status FROM runs WHERE run_key = ?", (run_key,)).fetchone()
        if row is None:
            raise StoreError(f"no planned run {run_key!r} in this study; plan it first")
        return str(row[0])

    # The study -------------------------------------------------------------------------------
    def init_study(self, name: str, spec: dict[str, Any], fingerprint: str) -> None:
        """Record the study, or check it is the one already here.

        The first call stores name, spec and fingerprint. A later call with the same
        fingerprint updates name and spec (a study may grow: more seeds, widths, axis values);
        a different fingerprint raises :class:`StudyMismatchError`.
        """
        now = _now()
        with self._write() as c:
            row = c.execute("SELECT name, fingerprint FROM study WHERE id = 1").fetchone()
            if row is None:
                c.execute("INSERT INTO study (id, name, spec, fingerprint, created_at, "
                          "updated_at) VALUES (1, ?, ?, ?, ?, ?)",
                          (name, _dumps(spec), fingerprint, now, now))
            elif row[1] != fingerprint:
                raise StudyMismatchError(f"{self.study_dir} holds study {row[0]!r} with a "
                                         "different base configuration; use a new --dir")
            else:
                c.execute("UPDATE study SET name = ?, spec = ?, updated_at = ? WHERE id = 1",
                          (name, _dumps(spec), now))

    def study_info(self) -> dict[str, Any] | None:
        """``name, spec, fingerprint, created_at, updated_at`` of the study, or None."""
        with self._read() as c:
            row = c.execute("SELECT name, spec, fingerprint, created_at, updated_at FROM study "
                            "WHERE id = 1").fetchone()
        if row is None:
            return None
        return {"name": row[0], "spec": self._loads(row[1], "study spec"), "fingerprint": row[2],
                "created_at": row[3], "updated_at": row[4]}

    def record_plan(self, run_keys: Iterable[str]) -> None:
        """Remember the run keys of the latest plan (the runs the current spec names): a spec
        that shrank leaves older runs in the store, which analyses leave out by default."""
        with self._write() as c:
            c.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('plan_run_keys', ?)",
                      (_dumps(list(run_keys)),))

    def plan_keys(self) -> list[str] | None:
        """The run keys recorded by :meth:`record_plan`, or None (a study stored before plans
        were recorded: every stored run is the plan)."""
        with self._read() as c:
            row = c.execute("SELECT value FROM meta WHERE key = 'plan_run_keys'").fetchone()
        return None if row is None else [str(k) for k in self._loads(row[0], "plan run keys")]

    def record_variants(self, meanings: dict[str, Any]) -> None:
        """Add variant name → meaning (its overrides) to those this study has ever used; a
        name keeps its first meaning (a variant dropped from the spec and later redefined is
        still refused by the study layer)."""
        with self._write() as c:
            row = c.execute("SELECT value FROM meta WHERE key = 'variant_meanings'").fetchone()
            known = {} if row is None else self._loads(row[0], "variant meanings")
            c.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('variant_meanings', ?)",
                      (_dumps({**meanings, **known}),))

    def variant_meanings(self) -> dict[str, Any]:
        """Every variant name recorded by :meth:`record_variants` → its meaning."""
        with self._read() as c:
            row = c.execute("SELECT value FROM meta WHERE key = 'variant_meanings'").fetchone()
        return {} if row is None else dict(self._loads(row[0], "variant meanings"))

    # Planning and state changes --------------------------------------------------------------
    def add_planned(self, runs: Iterable[PlannedRun]) -> int:
        """Insert the runs not yet in the store (status 'planned'); returns how many were new.

        A run_key already present is left as it is: the first plan that named a run keeps its
        cell (a dense run shared by two plans belongs to the cell that planned it first). The
        same run_key with a different config id raises :class:`StoreError`.
        """
        now, new = _now(), 0
        with self._write() as c:
            for run in runs:
                if not isinstance(run, PlannedRun):
                    raise StoreError(f"add_planned takes PlannedRun objects, got {run!r:.80}")
                cur = c.execute(
                    "INSERT INTO runs (run_key, config_id, seed, kind, sparse_width, dense_width,"
                    " cell, config, planned_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
                    " ON CONFLICT (run_key) DO NOTHING",
                    (run.run_key, run.config_id, int(run.seed), run.kind, run.sparse_width,
                     int(run.dense_width), _dumps(run.cell), _dumps(run.config), now))
                if cur.rowcount:
                    new += 1
                    continue
                (stored,) = c.execute("SELECT config_id FROM runs WHERE run_key = ?",
                                      (run.run_key,)).fetchone()
                if stored != run.config_id:
                    raise StoreError(f"run {run.run_key} is stored with config id {stored}, "
                                     f"planned again with {run.config_id}")
        return new

    def mark_running(self, run_key: str) -> None:
        """Status 'running' and ``started_at`` now (a finished run raises StoreError)."""
        with self._write() as c:
            if self._status(c, run_key) == "finished":
                raise StoreError(f"run {run_key} is already finished")
            c.execute("UPDATE runs SET status = 'running', started_at = ?, error = NULL, "
                      "attempts = attempts + 1 WHERE run_key = ?", (_now(), run_key))

    def record_finished(self, run_key: str, summary: dict[str, Any],
                        metrics: list[dict[str, Any]], gradflow: list[dict[str, Any]]) -> None:
        """Record a finished run, its per-epoch metrics and gradient-flow series, in ONE
        transaction. Idempotent: recording it again replaces the rows (one copy of everything)
        and keeps the first ``finished_at``."""
        if not isinstance(summary, dict):
            raise StoreError(f"run {run_key}: summary must be a dict, got {type(summary)}")
        metric_rows = [(run_key, i, *(_number(m.get(k)) for k in _METRIC_COLUMNS), _dumps(m))
                       for i, m in enumerate(metrics)]
        flow_rows = [(run_key, i, p.get("epoch"), p.get("step"),
                      _dumps({k: v for k, v in p.items()
                              if k not in ("epoch", "step", "per_layer")}),
                      _dumps(p.get("per_layer", {}))) for i, p in enumerate(gradflow)]
        with self._write() as c:
            self._status(c, run_key)
            now = _now()
            c.execute("UPDATE runs SET finished_at = CASE WHEN status = 'finished' "
                      "THEN finished_at ELSE ? END, started_at = COALESCE(started_at, ?), "
                      "status = 'finished', duration_s = ?, summary = ?, error = NULL "
                      "WHERE run_key = ?",
                      (now, now, _number(summary.get("duration_s")), _dumps(summary), run_key))
            c.execute("DELETE FROM metrics WHERE run_key = ?", (run_key,))
            c.execute("DELETE FROM gradflow WHERE run_key = ?", (run_key,))
            marks = ", ".join("?" * (3 + len(_METRIC_COLUMNS)))
            c.executemany(f"INSERT INTO metrics (run_key, idx, {', '.join(_METRIC_COLUMNS)}, "
                          f"data) VALUES ({marks})", metric_rows)
            c.executemany("INSERT INTO gradflow (run_key, idx, epoch, step, measures, "
                          "per_layer) VALUES (?, ?, ?, ?, ?, ?)", flow_rows)

    def record_failed(self, run_key: str, error: str) -> None:
        """Status 'failed' with the error text (a finished run raises StoreError)."""
        with self._write() as c:
            if self._status(c, run_key) == "finished":
                raise StoreError(f"run {run_key} is already finished")
            c.execute("UPDATE runs SET status = 'failed', error = ?, finished_at = ? "
                      "WHERE run_key = ?", (str(error), _now(), run_key))

    def reset_stale(self) -> int:
        """Runs left 'running' by a killed driver go back to 'planned'; returns how many."""
        with self._write() as c:
            return c.execute("UPDATE runs SET status = 'planned', started_at = NULL "
                             "WHERE status = 'running'").rowcount

    def mark_interrupted(self, run_keys: Iterable[str] | None = None) -> int:
        """Runs still 'running' (of ``run_keys``, or all of them) become 'interrupted': their
        driver stopped or died while they trained. Returns how many changed."""
        with self._write() as c:
            if run_keys is None:
                return c.execute("UPDATE runs SET status = 'interrupted' "
                                 "WHERE status = 'running'").rowcount
            return sum(c.execute("UPDATE runs SET status = 'interrupted' WHERE run_key = ? "
                                 "AND status = 'running'", (key,)).rowcount for key in run_keys)

    def reset_failed(self) -> int:
        """Failed runs go back to 'planned' (to retry them); returns how many."""
        with self._write() as c:
            return c.execute("UPDATE runs SET status = 'planned', started_at = NULL, "
                             "finished_at = NULL, error = NULL WHERE status = 'failed'").rowcount

    def record_outputs(self, run_key: str, summary: dict[str, Any],
                       metrics: list[dict[str, Any]], gradflow: list[dict[str, Any]]) -> str | None:
        """Record what a run directory holds as finished if it belongs to the planned run
        (``rundir.mismatch``), else as failed with the reason; returns the reason or None."""
        run = self.run(run_key)
        if run is None:
            raise StoreError(f"no planned run {run_key!r} in this study; plan it first")
        problem = mismatch(run, self.runs_dir / run_key, summary, metrics)
        if problem is None:
            self.record_finished(run_key, summary, metrics, gradflow)
        else:
            self.record_failed(run_key, problem)
        return problem

    def reconcile(self) -> int:
        """Record as finished every unfinished run whose run directory holds a summary.json
        (a worker finished it but the driver died before recording); returns how many.

        A run directory that does not belong to its run, or does not read, is recorded as a
        failure naming the file (see :meth:`record_outputs`)."""
        done = 0
        for run in self.runs():
            if run.status != "finished":
                try:
                    outputs = read_run_outputs(self.runs_dir / run.run_key)
                except StoreError as exc:
                    self.record_failed(run.run_key, str(exc))
                    continue
                if outputs is not None and self.record_outputs(
                        run.run_key, outputs.summary, outputs.metrics, outputs.gradflow) is None:
                    done += 1
        return done

    def damaged_runs(self, run_keys: Iterable[str] | None = None) -> list[tuple[str, str]]:
        """(run_key, what is wrong) of each finished run whose run directory is gone or whose
        ``final.pt`` does not load (``rundir.damage``); only ``run_keys`` when given."""
        wanted = None if run_keys is None else set(run_keys)
        found = []
        for run in self.runs("finished"):
            if wanted is None or run.run_key in wanted:
                problem = damage(self.runs_dir / run.run_key)
                if problem is not None:
                    found.append((run.run_key, problem))
        return found

    def reopen(self, run_keys: Iterable[str]) -> int:
        """Finished runs go back to 'planned' with their results removed (to train them
        again); returns how many."""
        keys = [(k,) for k in run_keys]
        with self._write() as c:
            for table in ("metrics", "gradflow"):
                c.executemany(f"DELETE FROM {table} WHERE run_key = ?", keys)
            before = c.total_changes
            c.executemany("UPDATE runs SET status = 'planned', summary = NULL, duration_s = NULL,"
                          " started_at = NULL, finished_at = NULL, error = NULL "
                          "WHERE run_key = ?", keys)
            return c.total_changes - before

    # Reading ---------------------------------------------------------------------------------
    def runs(self, status: str | None = None) -> list[RunRecord]:
        """Every run in plan order, or those with ``status`` (one of :data:`STATUSES`)."""
        if status is not None and status not in STATUSES:
            raise StoreError(f"unknown run status {status!r}; statuses: {', '.join(STATUSES)}")
        sql = f"SELECT {', '.join(_RECORD_COLUMNS)} FROM runs"
        args: tuple[Any, ...] = ()
        if status is not None:
            sql, args = sql + " WHERE status = ?", (status,)
        with self._read() as c:
            rows = c.execute(sql + " ORDER BY seq", args).fetchall()
        return [self._record(row) for row in rows]

    def run(self, run_key: str) -> RunRecord | None:
        """The record of one run, or None if it is not planned."""
        with self._read() as c:
            row = c.execute(f"SELECT {', '.join(_RECORD_COLUMNS)} FROM runs WHERE run_key = ?",
                            (run_key,)).fetchone()
        return None if row is None else self._record(row)

    def _record(self, row: tuple[Any, ...]) -> RunRecord:
        values = dict(zip(_RECORD_COLUMNS, row, strict=True))
        key = values["run_key"]
        for name in ("cell", "config"):
            values[name] = self._loads(values[name], f"{name} of run {key}")
        if values["summary"] is not None:
            values["summary"] = self._loads(values["summary"], f"summary of run {key}")
        for name, kind in (("cell", dict), ("config", dict), ("summary", (dict, type(None)))):
            if not isinstance(values[name], kind):
                raise corrupt(self.path, f"the {name} of run {key} is not a JSON object")
        try:
            return RunRecord(**values)
        except StoreError as exc:
            raise corrupt(self.path, str(exc)) from exc

    def counts(self) -> dict[str, int]:
        """Status → number of runs, every status present (zeros included)."""
        with self._read() as c:
            found = dict(c.execute("SELECT status, COUNT(*) FROM runs GROUP BY status"))
        return {s: int(found.get(s, 0)) for s in STATUSES}

    def metrics(self, run_key: str) -> list[dict[str, Any]]:
        """The per-epoch metric rows of a run, as recorded (empty until it finished)."""
        with self._read() as c:
            self._status(c, run_key)
            rows = c.execute("SELECT data FROM metrics WHERE run_key = ? ORDER BY idx",
                             (run_key,)).fetchall()
        return [self._loads(r[0], f"metric row of run {run_key}") for r in rows]

    def gradflow(self, run_key: str) -> list[dict[str, Any]]:
        """The gradient-flow series of a run: ``epoch, step``, the measures, ``per_layer``."""
        with self._read() as c:
            self._status(c, run_key)
            rows = c.execute("SELECT epoch, step, measures, per_layer FROM gradflow "
                             "WHERE run_key = ? ORDER BY idx", (run_key,)).fetchall()
        what = f"gradient-flow point of run {run_key}"
        return [{"epoch": e, "step": s, **self._loads(m, what), "per_layer": self._loads(p, what)}
                for e, s, m, p in rows]

    def results(self, only: Collection[str] | None = None) -> list[dict[str, Any]]:
        """One flat dict per run: the ``study export`` contract (see ``export.py``); with
        ``only``, just the runs with those keys (e.g. :meth:`plan_keys`)."""
        return _export.result_rows(self._only(only), self.select_rule())

    def select_rule(self) -> SelectRule | None:
        """The stored spec's ``select`` rule (:mod:`sparseflow.store.selection`), or None."""
        return rule_from_spec((self.study_info() or {}).get("spec"))

    def _only(self, only: Collection[str] | None) -> list[RunRecord]:
        records = self.runs()
        if only is None:
            return records
        keep = set(only)
        return [r for r in records if r.run_key in keep]

    def table(self, name: str = "runs", only: Collection[str] | None = None
              ) -> tuple[list[dict[str, Any]], list[str]]:
        """(rows, columns) of an export table (of ``only``'s runs, if given): ``runs`` (one row
        per run, :meth:`results`), ``metrics`` (one per run and epoch) or ``gradflow`` (one per
        run, probe point and layer); see ``export.py`` and ``export_series.py``."""
        if name not in TABLES:
            raise StoreError(f"unknown export table {name!r}; tables: {', '.join(TABLES)}")
        records, rule = self._only(only), self.select_rule()
        if name == "runs":
            return _export.result_rows(records, rule), _export.result_columns(records, rule)
        keys = {r.run_key for r in records if r.status == "finished"}
        if name == "metrics":
            return _series.metrics_table(records, self._series("metrics", keys), rule)
        return _series.gradflow_table(records, self._series("gradflow", keys), rule)

    def _series(self, table: str, keys: Collection[str]) -> dict[str, list[dict[str, Any]]]:
        """run_key → the stored metric rows or gradient-flow points of each run in ``keys``,
        read in one query."""
        sql = {"metrics": "SELECT run_key, data FROM metrics ORDER BY run_key, idx",
               "gradflow": "SELECT run_key, epoch, step, measures, per_layer FROM gradflow "
                           "ORDER BY run_key, idx"}[table]
        with self._read() as c:
            rows = c.execute(sql).fetchall()
        found: dict[str, list[dict[str, Any]]] = {}
        for key, *values in rows:
            if key not in keys:
                continue
            what = f"{'metric row' if table == 'metrics' else 'gradient-flow point'} of run {key}"
            if table == "metrics":
                item = self._loads(values[0], what)
            else:
                epoch, step, measures, per_layer = values
                item = {"epoch": epoch, "step": step, **self._loads(measures, what),
                        "per_layer": self._loads(per_layer, what)}
            found.setdefault(key, []).append(item)
        return found

    def export(self, path: str | Path, fmt: str, only: Collection[str] | None = None,
               table: str = "runs") -> Path:
        """Write the export ``table`` ('runs': :meth:`results`; 'metrics'; 'gradflow'; see
        :meth:`table`) of ``only``'s runs, if given, to ``path`` as ``fmt`` ('csv' or
        'parquet'), atomically."""
        rows, columns = self.table(table, only)
        types = {"runs": _export.TYPES, "metrics": _series.METRICS_TYPES,
                 "gradflow": _series.GRADFLOW_TYPES}[table]
        return _export.write_rows(rows, columns, path, fmt, types)

    # Lifetime --------------------------------------------------------------------------------
    def close(self) -> None:
        """Close the connection (idempotent)."""
        with self._lock:
            if self._conn is not None and os.getpid() == self._pid:
                self._conn.close()
            self._conn = None

    def __enter__(self) -> StudyStore:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"StudyStore({str(self.study_dir)!r})"


def set_aside(study_dir: str | Path) -> Path | None:
    """Move a damaged ``study.sqlite`` (and its ``-wal``/``-shm``) aside as
    ``study.sqlite.corrupt-<UTC time>``, so a new store can be built from the run directories;
    returns the new name, or None when there was no store. Only under the study lock."""
    path = Path(study_dir) / DB_NAME
    if not path.exists():
        return None
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    target = path.with_name(f"{DB_NAME}.corrupt-{stamp}")
    for suffix in ("-wal", "-shm", ""):  # the main file last: its absence means "moved"
        side = path.with_name(DB_NAME + suffix)
        if side.exists():
            side.rename(target.with_name(target.name + suffix))
    return target
