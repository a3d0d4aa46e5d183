"""The SQLite schema of ``study.sqlite``, its connection settings and its migrations.

Durability decisions (the store must survive SIGKILL, and a power cut, at any moment):

- ``journal_mode=WAL``: a commit appends to the write-ahead log, so readers (``study status``,
  ``study export``) never block the driver and the driver never blocks them; a transaction
  interrupted by a kill is simply absent from the log on the next open.
- ``synchronous=FULL``: the log is fsynced at every commit, so a run recorded as finished stays
  recorded even across an OS crash or power cut (NORMAL would be safe against a killed process
  but may lose the last commits on power loss). The cost is one fsync per recorded run — a
  millisecond against runs that last seconds to hours.
- ``foreign_keys=ON``: metric rows can only exist for a known run.
- a busy timeout, so a reader that opens the store while the driver commits waits instead of
  failing.

Readers (``study status``, ``export``, ``tests``, ``report``) open the file read-only and create
nothing beside it: ``mode=ro`` while a ``-wal`` file exists (a driver is running, or died), else
``immutable=1`` (a cleanly closed WAL database is whole in its main file, and an immutable open
needs no ``-shm``), which also reads a study on a read-only file system.

Damage is detected, not trusted: SQLite's corruption errors on open or on any query, a failing
``PRAGMA quick_check`` and stored JSON that does not decode all raise
:class:`~sparseflow.store.errors.StoreCorruptError` naming the file and the rebuild.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path
from urllib.parse import quote

from sparseflow.store.errors import StoreCorruptError, StoreError

#: The schema version this code writes; a store with a newer one is refused.
SCHEMA_VERSION = 2
BUSY_TIMEOUT_S = 30.0
#: SQLite's primary result codes for a damaged file.
_SQLITE_CORRUPT, _SQLITE_NOTADB = 11, 26
#: (table, JSON column) pairs the integrity check decodes in SQL.
_JSON_COLUMNS = (("study", "spec"), ("runs", "cell"), ("runs", "config"), ("runs", "summary"),
                 ("metrics", "data"), ("gradflow", "measures"), ("gradflow", "per_layer"))

_V1 = """
CREATE TABLE IF NOT EXISTS meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE study (
    id          INTEGER PRIMARY KEY CHECK (id = 1),  -- one study per store
    name        TEXT NOT NULL,
    spec        TEXT NOT NULL,                       -- JSON
    fingerprint TEXT NOT NULL,
    created_at  TEXT NOT NULL,                       -- ISO-8601 UTC
    updated_at  TEXT NOT NULL
);
CREATE TABLE runs (
    seq          INTEGER PRIMARY KEY,                -- plan order (stable across VACUUM)
    run_key      TEXT NOT NULL UNIQUE,
    config_id    TEXT NOT NULL,
    seed         INTEGER NOT NULL,
    kind         TEXT NOT NULL CHECK (kind IN ('sparse', 'dense')),
    sparse_width INTEGER,
    dense_width  INTEGER NOT NULL,
    cell         TEXT NOT NULL,                      -- JSON: axis dotted key -> value
    config       TEXT NOT NULL,                      -- JSON: full resolved config
    status       TEXT NOT NULL DEFAULT 'planned'
                 CHECK (status IN ('planned', 'running', 'finished', 'failed')),
    error        TEXT,
    attempts     INTEGER NOT NULL DEFAULT 0,
    planned_at   TEXT NOT NULL,
    started_at   TEXT,
    finished_at  TEXT,
    duration_s   REAL,
    summary      TEXT                                -- JSON of summary.json, when finished
);
CREATE INDEX runs_status ON runs (status);
CREATE TABLE metrics (
    run_key        TEXT NOT NULL REFERENCES runs (run_key) ON DELETE CASCADE,
    idx            INTEGER NOT NULL,                 -- position in the run's series
    epoch          INTEGER,
    train_loss     REAL,
    train_accuracy REAL,
    val_loss       REAL,
    val_accuracy   REAL,
    test_loss      REAL,
    test_accuracy  REAL,
    lr             REAL,
    seconds        REAL,
    data           TEXT NOT NULL,                    -- JSON: the whole row, as recorded
    PRIMARY KEY (run_key, idx)
);
CREATE TABLE gradflow (
    run_key   TEXT NOT NULL REFERENCES runs (run_key) ON DELETE CASCADE,
    idx       INTEGER NOT NULL,                      -- position in the run's probe series
    epoch     INTEGER,
    step      INTEGER,
    measures  TEXT NOT NULL,                         -- JSON: gf1, gf2, egf1, egf2, ...
    per_layer TEXT NOT NULL,                         -- JSON: layer -> that layer's values
    PRIMARY KEY (run_key, idx)
);
"""



def _v2(conn: sqlite3.Connection) -> None:
    """Status 'interrupted'. SQLite cannot change a CHECK constraint in place: rebuild ``runs``
    (SQLite's documented procedure; ``migrate`` turns foreign keys off around it, or dropping
    the old table would cascade to the metric rows)."""
    (sql,) = conn.execute("SELECT sql FROM sqlite_master WHERE type = 'table' "
                          "AND name = 'runs'").fetchone()
    old = "'planned', 'running', 'finished', 'failed'"
    if old not in sql:
        raise StoreError("unexpected runs table in the store; cannot migrate it")
    new = sql.replace(old, "'planned', 'running', 'interrupted', 'finished', 'failed'")
    conn.execute(new.replace("CREATE TABLE runs", "CREATE TABLE runs_v2", 1))
    conn.execute("INSERT INTO runs_v2 SELECT * FROM runs")
    conn.execute("DROP TABLE runs")
    conn.execute("ALTER TABLE runs_v2 RENAME TO runs")
    conn.execute("CREATE INDEX runs_status ON runs (status)")
    if conn.execute("PRAGMA foreign_key_check").fetchone() is not None:
        raise StoreError("the store's metric rows do not match its runs; cannot migrate it")


#: Migration to version ``v`` (applied in order, each in the opening transaction).
MIGRATIONS: dict[int, Callable[[sqlite3.Connection], None]] = {
    1: lambda conn: _script(conn, _V1),
    2: _v2,
}


def _script(conn: sqlite3.Connection, sql: str) -> None:
    # executescript() would COMMIT the open transaction first; run statement by statement so a
    # migration is all-or-nothing.
    for statement in sql.split(";"):
        if statement.strip():
            conn.execute(statement)


def connect(path: Path, *, readonly: bool = False) -> sqlite3.Connection:
    """A connection to ``path`` with the store's settings (see the module docstring).

    ``isolation_level=None``: the store issues BEGIN/COMMIT itself, so every transaction
    boundary is explicit. ``check_same_thread=False``: a driver may record from an executor's
    callback thread; the store serializes access with its own lock. ``readonly``: never write
    the file nor create one beside it.
    """
    try:
        if readonly:
            wal = path.with_name(path.name + "-wal").exists()
            uri = f"file:{quote(str(path.resolve()))}?mode=ro{'' if wal else '&immutable=1'}"
            conn = sqlite3.connect(uri, uri=True, timeout=BUSY_TIMEOUT_S, isolation_level=None,
                                   check_same_thread=False)
        else:
            conn = sqlite3.connect(path, timeout=BUSY_TIMEOUT_S, isolation_level=None,
                                   check_same_thread=False)
        conn.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
        if not readonly:
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = FULL")
        conn.execute("PRAGMA foreign_keys = ON")
    except sqlite3.DatabaseError as exc:
        raise database_error(path, exc) from exc
    return conn


def is_corruption(exc: sqlite3.DatabaseError) -> bool:
    """Whether SQLite reports a damaged file (not a busy, locked or read-only one)."""
    code = getattr(exc, "sqlite_errorcode", None)
    if code is not None:
        return code & 0xFF in (_SQLITE_CORRUPT, _SQLITE_NOTADB)
    return not isinstance(exc, sqlite3.OperationalError)


def corrupt(path: Path, detail: str) -> StoreCorruptError:
    """The one-line error for a damaged store, naming the file and the rebuild."""
    detail = " ".join(detail.split())[:160]
    return StoreCorruptError(
        f"{path} is corrupt ({detail}); rebuild it from the run directories with "
        f"`sparseflow study run SPEC --dir {path.parent} --rebuild` (the damaged file is kept "
        f"as {path.name}.corrupt-<time>)")


def database_error(path: Path, exc: sqlite3.DatabaseError) -> StoreError:
    """A StoreError for a failed SQLite call: corruption names the rebuild."""
    if is_corruption(exc):
        return corrupt(path, str(exc))
    return StoreError(f"cannot use the study store {path} ({exc})")


def check_integrity(conn: sqlite3.Connection, path: Path) -> None:
    """``PRAGMA quick_check`` (page structure) and a decode of every stored JSON value, both in
    SQL (one pass over the file); raises :class:`StoreCorruptError` naming what is damaged.

    Random bytes inside a row's payload pass quick_check; they show up here as JSON that no
    longer decodes, or as a malformed record when the row is read.
    """
    try:
        problems = [str(r[0]) for r in conn.execute("PRAGMA quick_check(3)")]
        if problems != ["ok"]:
            raise corrupt(path, f"quick_check: {'; '.join(problems)}")
        for table, column in _JSON_COLUMNS:
            bad = conn.execute(f"SELECT COUNT(*) FROM {table} WHERE {column} IS NOT NULL AND "
                               f"NOT json_valid({column})").fetchone()[0]
            if bad:
                raise corrupt(path, f"{bad} undecodable {table}.{column} value(s)")
    except sqlite3.DatabaseError as exc:
        raise database_error(path, exc) from exc


def stored_version(conn: sqlite3.Connection) -> int:
    """The schema version recorded in ``meta`` (0 for an empty database)."""
    has_meta = conn.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'meta'").fetchone()
    if not has_meta:
        return 0
    row = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
    return int(row[0]) if row else 0


def migrate(conn: sqlite3.Connection, path: Path) -> None:
    """Bring the schema to :data:`SCHEMA_VERSION`; refuse a store written by newer code.

    Reads first and writes only when something is missing, so opening an up-to-date store
    (e.g. ``study status`` while the driver runs) takes no write lock.
    """
    version = checked_version(conn, path)
    if version == SCHEMA_VERSION:
        return
    conn.execute("PRAGMA foreign_keys = OFF")  # a no-op inside a transaction: set it before
    conn.execute("BEGIN IMMEDIATE")
    try:
        version = checked_version(conn, path)  # another process may have migrated meanwhile
        for target in range(version + 1, SCHEMA_VERSION + 1):
            MIGRATIONS[target](conn)
        conn.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('schema_version', ?)",
                     (str(SCHEMA_VERSION),))
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    finally:
        conn.execute("PRAGMA foreign_keys = ON")


def checked_version(conn: sqlite3.Connection, path: Path) -> int:
    """The stored schema version; a damaged file or one newer than this sparseflow raises."""
    try:
        version = stored_version(conn)
    except sqlite3.DatabaseError as exc:
        raise database_error(path, exc) from exc
    if version > SCHEMA_VERSION:
        raise StoreError(f"{path} has store schema version {version}, newer than this "
                         f"sparseflow supports ({SCHEMA_VERSION}); upgrade sparseflow")
    return version
