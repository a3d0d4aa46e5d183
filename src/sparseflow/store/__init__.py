"""The durable run store of a study directory.

A study directory ``DIR`` holds ``DIR/study.sqlite`` (:class:`StudyStore`), the run
directories ``DIR/runs/<run_key>/`` written by the training code, and ``DIR/.lock``
(:class:`StudyLock`). Only the study driver writes the store, one transaction per state change,
so it survives SIGKILL at any moment; ``export`` writes the ``study export`` table.
"""

from __future__ import annotations

from sparseflow.store.errors import StoreError, StudyBusyError, StudyMismatchError
from sparseflow.store.export import COLUMN_DOCS, CSV_READ_DTYPES, FORMATS
from sparseflow.store.lock import StudyLock, driver_alive
from sparseflow.store.records import STATUSES, PlannedRun, RunRecord
from sparseflow.store.rundir import RunOutputs, read_run_outputs
from sparseflow.store.schema import SCHEMA_VERSION
from sparseflow.store.store import DB_NAME, RUNS_DIR, TABLES, StudyStore

__all__ = [
    "COLUMN_DOCS",
    "CSV_READ_DTYPES",
    "DB_NAME",
    "FORMATS",
    "RUNS_DIR",
    "SCHEMA_VERSION",
    "STATUSES",
    "TABLES",
    "PlannedRun",
    "RunOutputs",
    "RunRecord",
    "StoreError",
    "StudyBusyError",
    "StudyLock",
    "StudyMismatchError",
    "StudyStore",
    "driver_alive",
    "read_run_outputs",
]
