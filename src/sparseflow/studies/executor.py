"""Running a study: the driver plans, schedules runs on a local process pool, and is the one
writer of the store. Idempotent: finished runs are skipped, interrupted ones resume."""

from __future__ import annotations

import multiprocessing as mp
import os
from collections.abc import Callable, Iterable
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path

from sparseflow.store import PlannedRun, StudyLock, StudyStore
from sparseflow.studies.plan import Plan
from sparseflow.studies.worker import Outcome, execute, init_worker

RUNS = "runs"


class WorkerDied(RuntimeError):
    """A worker process died; the study stops and the run is retried next invocation."""


@dataclass
class StudyOutcome:
    """What one invocation did."""

    planned: int
    skipped: int
    finished: int
    failed: int
    aborted: bool = False


def default_jobs() -> int:
    """All cores this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


def _record(store: StudyStore, out: Outcome) -> None:
    if out.ok:
        store.record_finished(out.run_key, out.summary, out.metrics, out.gradflow)
    else:
        store.record_failed(out.run_key, out.error)


Started = Callable[[str], None]


def _serial(todo: list[PlannedRun], runs_dir: str, started: Started) -> Iterable[Outcome]:
    # In-process (jobs = 1): no worker start-up cost, the caller's thread settings apply.
    for run in todo:
        started(run.run_key)
        yield execute(run.run_key, run.config, runs_dir)


def _pooled(todo: list[PlannedRun], runs_dir: str, jobs: int, threads: int,
            started: Started) -> Iterable[Outcome]:
    # spawn: workers start clean (no forked torch thread pools or locks).
    ctx = mp.get_context("spawn")
    with ProcessPoolExecutor(jobs, mp_context=ctx, initializer=init_worker,
                             initargs=(threads,)) as pool:
        pending: dict[Future[Outcome], str] = {}
        queue = list(reversed(todo))
        try:
            # At most 2 runs per worker in flight: a fail-fast stop has little to cancel, and
            # runs complete roughly in plan order.
            while queue or pending:
                while queue and len(pending) < 2 * jobs:
                    run = queue.pop()
                    started(run.run_key)
                    pending[pool.submit(execute, run.run_key, run.config, runs_dir)] = run.run_key
                done, _ = wait(pending, return_when=FIRST_COMPLETED)
                for fut in done:
                    key = pending.pop(fut)
                    try:
                        yield fut.result()
                    except BrokenProcessPool as exc:
                        # A worker died (killed, out of memory): its runs resume next time.
                        yield Outcome(key, False, error=f"worker process died: {exc}")
                        raise WorkerDied(str(exc)) from None
        finally:
            for fut in pending:
                fut.cancel()


def run_study(plan: Plan, study_dir: str | Path, *, jobs: int | None = None,
              fail_fast: bool = False,
              on_start: Callable[[int, int], None] | None = None,
              on_outcome: Callable[[Outcome], None] | None = None) -> StudyOutcome:
    """Run every unfinished run of ``plan`` in ``study_dir``; returns what happened.

    Refuses (StudyBusyError) when another driver holds the directory, and (StudyMismatchError)
    when the directory holds a study with another base configuration. Failed runs are recorded
    with their error and retried on the next invocation; ``fail_fast`` stops scheduling after
    the first failure.
    """
    study_dir = Path(study_dir)
    study_dir.mkdir(parents=True, exist_ok=True)
    jobs = jobs or default_jobs()
    with StudyLock(study_dir), StudyStore(study_dir) as store:
        store.init_study(plan.spec.name, plan.spec.model_dump(mode="json"), plan.fingerprint)
        store.add_planned(plan.runs)
        store.reset_stale()
        store.reconcile()  # runs finished on disk after a driver died before recording them
        status = {r.run_key: r.status for r in store.runs()}
        todo = [r for r in plan.runs if status.get(r.run_key) != "finished"]
        outcome = StudyOutcome(planned=len(plan.runs), skipped=len(plan.runs) - len(todo),
                               finished=0, failed=0)
        if on_start:
            on_start(len(plan.runs), outcome.skipped)
        runs_dir = str(study_dir / RUNS)
        threads = max(1, default_jobs() // jobs)
        stream = (_serial(todo, runs_dir, store.mark_running) if jobs == 1 or len(todo) <= 1
                  else _pooled(todo, runs_dir, min(jobs, len(todo)), threads,
                               store.mark_running))
        try:
            for out in stream:
                _record(store, out)
                outcome.finished += out.ok
                outcome.failed += not out.ok
                if on_outcome:
                    on_outcome(out)
                if fail_fast and not out.ok:
                    outcome.aborted = True
                    break
        except WorkerDied:
            outcome.aborted = True
        return outcome
