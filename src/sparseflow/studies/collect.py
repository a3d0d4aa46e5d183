"""``study collect DIR``: record what the tasks of a driver that stopped waiting finished.

The same path as the driver's: a run directory holding a ``summary.json`` is checked against
the plan and recorded (``StudyStore.reconcile``), and the runs an ended Slurm task failed are
recorded as failed with its error (retried by the next ``study run``). Under the study lock,
so it never races a driver; idempotent.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from sparseflow.store import StudyLock, StudyStore
from sparseflow.studies.worker import Outcome


@dataclass
class Collected:
    """What one ``study collect`` recorded."""

    finished: int
    failed: int
    active_tasks: int


def collect_study(study_dir: str | Path) -> Collected:
    """Record every finished run directory and every failure of an ended task of
    ``study_dir``; returns the counts and how many recorded tasks are still active."""
    from sparseflow.studies.executor import _record
    from sparseflow.studies.slurm_jobs import jobs_path

    study_dir = Path(study_dir)
    with StudyLock(study_dir), StudyStore(study_dir, create=False) as store:
        finished = store.reconcile()
        failed = 0
        active = 0

        def settle(out: Outcome) -> None:
            nonlocal finished, failed
            rec = store.run(out.run_key)
            if rec is None or rec.status == "finished":
                return  # not this plan's, or recorded already: never twice
            if not out.ok and rec.status == "failed" and rec.error == out.error:
                return
            out = _record(store, out)
            finished += out.ok
            failed += not out.ok

        if jobs_path(study_dir).is_file():
            from sparseflow.studies.slurm_backend import collect

            active = collect(study_dir, settle)
    return Collected(finished, failed, active)
