"""Running a study: the driver plans, groups same-shape runs, schedules the groups on a
backend (in-process, a local process pool, or a Ray cluster) and is the one writer of the store.
Idempotent: finished runs are skipped, interrupted ones resume.

Stopping early (an exception such as a SIGINT/SIGTERM interrupt, ``fail_fast``, a dead worker):
the backend stops its workers at once (they write only atomic files, so a run stopped
mid-epoch resumes from its last checkpoint), then the runs they were training are marked
'interrupted', all before the study lock is released. Nothing is recorded as finished that a
worker did not finish.
"""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import os
import shutil
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sparseflow.config.schema import ExperimentConfig
from sparseflow.errors import ConfigError
from sparseflow.plugins import loaded_plugins, merge
from sparseflow.store import DB_NAME, StudyBusyError, StudyLock, StudyStore
from sparseflow.store.rundir import FINAL, SUMMARY
from sparseflow.store.store import set_aside
from sparseflow.studies import batching
from sparseflow.studies.grouping import RunGroup, group_runs
from sparseflow.studies.plan import Plan
from sparseflow.studies.preflight import check_compatible, meanings, preflight
from sparseflow.studies.spec import SlurmSpec
from sparseflow.studies.worker import Outcome, execute_group, init_worker
from sparseflow.train.vectorized import GROUPS_DIR, group_checkpoint

RUNS = "runs"
EXECUTORS = ("local", "ray", "slurm")

#: Called with a run key when its run is handed to a worker.
Started = Callable[[str], None]


class WorkerDied(RuntimeError):
    """A worker process died; the study stops and its runs are retried next invocation."""


@dataclass
class StudyOutcome:
    """What one invocation did."""

    planned: int
    skipped: int
    finished: int
    failed: int
    groups: int = 0
    aborted: bool = False
    notes: list[str] = field(default_factory=list)


def default_jobs() -> int:
    """All cores this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


def _items(group: RunGroup) -> list[tuple[str, dict]]:
    return [(r.run_key, r.config) for r in group.runs]


def serial_backend(groups: list[RunGroup], runs_dir: str, started: Started) -> Iterable[Outcome]:
    """In-process (jobs = 1): no worker start-up cost, the caller's thread settings apply."""
    for group in groups:
        for key in group.keys:
            started(key)
        yield from execute_group(_items(group), runs_dir)


def pool_backend(groups: list[RunGroup], runs_dir: str, started: Started, *, jobs: int,
                 threads: int, plugins: tuple[str, ...] = ()) -> Iterable[Outcome]:
    """A local pool of spawned worker processes, at most two groups per worker in flight."""
    ctx = mp.get_context("spawn")  # workers start clean: no forked thread pools or locks
    with ProcessPoolExecutor(jobs, mp_context=ctx, initializer=init_worker,
                             initargs=(threads, plugins)) as pool:
        pending: dict[Future[list[Outcome]], RunGroup] = {}
        queue = list(reversed(groups))
        try:
            while queue or pending:
                while queue and len(pending) < 2 * jobs:
                    group = queue.pop()
                    for key in group.keys:
                        started(key)
                    pending[pool.submit(execute_group, _items(group), runs_dir)] = group
                done, _ = wait(pending, return_when=FIRST_COMPLETED)
                for fut in done:
                    group = pending.pop(fut)
                    try:
                        yield from fut.result()
                    except BrokenProcessPool as exc:
                        # A worker died (killed, out of memory): its runs resume next time.
                        for key in group.keys:
                            yield Outcome(key, False, error=f"worker process died: {exc}")
                        raise WorkerDied(str(exc)) from None
        finally:
            if pending:  # stopped early: do not wait for the groups in flight to finish
                _stop_workers(pool)


#: Seconds a stopped worker gets to exit before it is killed.
STOP_GRACE_S = 10.0


def _stop_workers(pool: ProcessPoolExecutor) -> None:
    """Terminate the pool's worker processes now and wait for them to be gone.

    The pool then marks every pending future broken itself; futures are not cancelled first
    (Python 3.11's pool raises InvalidStateError in its manager thread on a cancelled one).
    """
    procs = list((getattr(pool, "_processes", None) or {}).values())
    for proc in procs:
        if proc.is_alive():
            proc.terminate()
    for proc in procs:
        proc.join(STOP_GRACE_S)
        if proc.is_alive():
            proc.kill()
            proc.join(STOP_GRACE_S)
    pool.shutdown(wait=True)


def run_study(plan: Plan, study_dir: str | Path, *, jobs: int | None = None,
              fail_fast: bool = False, vectorize: str = "auto", max_group: int = 8,
              executor: str = "local", address: str | None = None,
              on_start: Callable[[int, int], None] | None = None,
              on_outcome: Callable[[Outcome], None] | None = None, rebuild: bool = False,
              on_note: Callable[[str], None] | None = None,
              plugins: Iterable[str] = (), slurm: SlurmSpec | None = None,
              wait: bool = True) -> StudyOutcome:
    """Run every unfinished run of ``plan`` in ``study_dir``; returns what happened.

    Same-shape runs are trained as batched groups of at most ``max_group`` when ``vectorize``
    is 'on', and when it is 'auto' where batching measures faster (once per group shape and
    study: :mod:`~sparseflow.studies.batching`); the results are the same as separate runs
    within float tolerance. Refuses
    (StudyBusyError) when another driver holds the directory, and (StudyMismatchError) when it
    holds a study with another base configuration. Failed runs are recorded with their error and
    retried on the next invocation; ``fail_fast`` stops scheduling after the first failure.

    The store is rebuilt from the run directories when it is missing, or (``rebuild``) after
    moving a damaged one aside; finished runs whose run directory is gone or whose final.pt
    does not load are trained again. Each such event is one line given to ``on_note`` (and
    kept in ``StudyOutcome.notes``).

    Every worker imports the plugin modules of the spec, those loaded in this process with
    :func:`sparseflow.plugins.load_plugins`, and ``plugins`` (then the installed entry-point
    plugins), so components registered there are known where the runs are built.
    """
    if vectorize not in batching.MODES:
        raise ConfigError(f"--vectorize must be one of {', '.join(batching.MODES)}, "
                          f"not {vectorize!r}")
    if executor not in EXECUTORS:
        raise ConfigError(f"--executor must be one of {', '.join(EXECUTORS)}, not {executor!r}")
    if max_group < 1:
        raise ConfigError(f"--max-group must be ≥ 1, got {max_group}")
    if jobs is not None and jobs < 1:
        raise ConfigError(f"--jobs must be ≥ 1, got {jobs}")
    study_dir = Path(study_dir)
    modules = tuple(merge(plan.spec.plugins, loaded_plugins(), plugins))
    backend = {"slurm": slurm or plan.spec.slurm, "wait": wait}
    if executor == "slurm":
        from sparseflow.studies.slurm_backend import check_slurm

        check_slurm(backend["slurm"])
    # before creating anything
    preflight(plan, study_dir, executor=executor, address=address, rebuild=rebuild,
              plugins=modules)
    created = _first_missing(study_dir)  # what mkdir will create (None: it exists)
    try:
        return _run(plan, study_dir, jobs or default_jobs(), fail_fast, vectorize, max_group,
                    executor, address, on_start, on_outcome, rebuild, on_note, modules, backend)
    except Exception as exc:
        # A brand-new directory in which nothing ran is no study: leave nothing behind (but
        # a busy lock means another driver created it meanwhile: it is theirs).
        if created is not None and not isinstance(exc, StudyBusyError) and not any(
                p.name != batching.BATCHING_DIR for p in (study_dir / RUNS).glob("*")):
            shutil.rmtree(created, ignore_errors=True)
        raise


def _first_missing(path: Path) -> Path | None:
    """The outermost of ``path`` and its parents that does not exist yet (None: path exists)."""
    missing = None
    for p in (path, *path.parents):
        if p.exists():
            break
        missing = p
    return missing


def _run(plan: Plan, study_dir: Path, jobs: int, fail_fast: bool, vectorize: str,
         max_group: int, executor: str, address: str | None,
         on_start: Callable[[int, int], None] | None,
         on_outcome: Callable[[Outcome], None] | None, rebuild: bool,
         on_note: Callable[[str], None] | None, plugins: tuple[str, ...],
         backend: dict[str, Any]) -> StudyOutcome:
    study_dir.mkdir(parents=True, exist_ok=True)
    notes: list[str] = []

    def note(line: str) -> None:
        notes.append(line)
        if on_note:
            on_note(line)

    with StudyLock(study_dir), _fresh_store(study_dir, rebuild) as (store, fresh):
        # Again under the lock: another driver may have changed the study meanwhile.
        check_compatible(plan, store.study_info(), study_dir, store.variant_meanings())
        store.init_study(plan.spec.name, plan.spec.model_dump(mode="json"), plan.fingerprint)
        store.record_variants(meanings(plan))
        store.add_planned(plan.runs)
        store.record_plan(r.run_key for r in plan.runs)
        store.mark_interrupted()  # we hold the lock: rows still 'running' lost their driver
        # runs finished on disk after a driver died before recording them (or a lost store)
        recorded = store.reconcile()
        if fresh:
            note(f"{fresh}: rebuilt it from the run directories ({recorded} finished runs "
                 "recorded)")
        _retrain_damaged(store, [r.run_key for r in plan.runs], note)
        status = {r.run_key: r.status for r in store.runs()}
        todo = {r.run_key for r in plan.runs if status.get(r.run_key) != "finished"}
        # Groups are formed over the whole plan, so a group stopped after some of its members
        # finished is the same group again and resumes from its checkpoint (bitwise); its
        # finished members are skipped by the worker.
        groups = [g for g in group_runs(plan.runs, vectorize=vectorize, max_group=max_group)
                  if any(k in todo for k in g.keys)]
        runs_dir = study_dir / RUNS
        prune_group_checkpoints(runs_dir, groups, todo)
        _prepare_batching(runs_dir, groups, vectorize)
        outcome = StudyOutcome(planned=len(plan.runs), skipped=len(plan.runs) - len(todo),
                               finished=0, failed=0, groups=len(groups), notes=notes)
        if on_start:
            on_start(len(plan.runs), outcome.skipped)
        in_flight: set[str] = set()  # handed to a worker, no outcome yet

        def started(key: str) -> None:
            if key in todo:
                store.mark_running(key)
                in_flight.add(key)

        try:
            # closing(): the backend stops its workers before the lock is released.
            stream = _backend(groups, str(runs_dir), started, executor, address, jobs, plugins,
                              **backend)
            with contextlib.closing(iter(stream)) as stream:
                for out in stream:
                    if out.run_key not in in_flight:
                        continue  # a finished member of a resumed group
                    out = _record(store, out)
                    in_flight.discard(out.run_key)
                    outcome.finished += out.ok
                    outcome.failed += not out.ok
                    if on_outcome:
                        on_outcome(out)
                    if fail_fast and not out.ok:
                        outcome.aborted = True
                        break
        except WorkerDied:
            outcome.aborted = True
        finally:
            # The workers are stopped by now; what they were handed did not finish.
            store.mark_interrupted(in_flight)
            with contextlib.suppress(OSError):  # only when empty: no group left to resume
                (runs_dir / GROUPS_DIR).rmdir()
        return outcome


def _prepare_batching(runs_dir: Path, groups: list[RunGroup], vectorize: str) -> None:
    """Make the study's batch-or-not records agree with ``vectorize`` (see
    :mod:`~sparseflow.studies.batching`) before any worker reads them."""
    if vectorize == "on":
        batching.force(runs_dir, [[ExperimentConfig.model_validate(r.config) for r in g.runs]
                                  for g in groups if len(g.runs) > 1])
    elif vectorize == "auto":
        batching.drop_forced(runs_dir)


def prune_group_checkpoints(runs_dir: Path, groups: list[RunGroup], todo: set[str]) -> int:
    """Delete the group checkpoints (and torn temporary files) under ``runs_dir`` that none of
    ``groups`` can resume from; returns how many. A group resumes from the checkpoint of all
    its members, or of its unfinished ones (what it trained when some had finished before)."""
    folder = runs_dir / GROUPS_DIR
    if not folder.is_dir():
        return 0
    keep = set()
    for group in groups:
        if len(group.runs) > 1:
            cfgs = [ExperimentConfig.model_validate(r.config) for r in group.runs]
            keep.add(group_checkpoint(runs_dir, cfgs).name)
            rest = [c for c, r in zip(cfgs, group.runs, strict=True) if r.run_key in todo]
            keep.add(group_checkpoint(runs_dir, rest).name)
    stale = [p for p in folder.iterdir() if p.is_file() and p.name not in keep]
    for path in stale:
        path.unlink(missing_ok=True)
    return len(stale)


def _record(store: StudyStore, out: Outcome) -> Outcome:
    """Record ``out``; a result that is not the run's own (see ``rundir.mismatch``) becomes a
    failure, returned as such."""
    if out.ok:
        problem = store.record_outputs(out.run_key, out.summary, out.metrics, out.gradflow)
        return out if problem is None else Outcome(out.run_key, False, error=problem)
    store.record_failed(out.run_key, out.error)
    return out


@contextlib.contextmanager
def _fresh_store(study_dir: Path, rebuild: bool) -> Iterator[tuple[StudyStore, str]]:
    """Under the lock: move the store aside first when ``rebuild``; yields the open store and,
    when it is new beside existing run directories (it is rebuilt from them), why."""
    path, runs_dir, why = study_dir / DB_NAME, study_dir / RUNS, ""
    moved = set_aside(study_dir) if rebuild else None
    if moved is not None:
        why = f"moved {path} aside to {moved.name}"
    elif not path.exists() and runs_dir.is_dir() and any(runs_dir.iterdir()):
        why = f"{path} was missing"
    with StudyStore(study_dir) as store:
        yield store, why


def _retrain_damaged(store: StudyStore, run_keys: list[str], note: Callable[[str], None]) -> None:
    """Finished runs of the plan whose directory is gone or whose final.pt does not load go
    back to 'planned' (runs are deterministic: training them again re-creates them)."""
    damaged = store.damaged_runs(run_keys)
    for key, problem in damaged:
        note(f"run {key}: {problem}; training it again")
        for name in (SUMMARY, FINAL):  # summary.json first: without it the run is unfinished
            (store.runs_dir / key / name).unlink(missing_ok=True)
    store.reopen(key for key, _ in damaged)


def _backend(groups: list[RunGroup], runs_dir: str, started: Started, executor: str,
             address: str | None, jobs: int, plugins: tuple[str, ...] = (),
             slurm: SlurmSpec | None = None, wait: bool = True) -> Iterable[Outcome]:
    if executor == "slurm":
        from sparseflow.studies.slurm_backend import slurm_backend

        return slurm_backend(groups, runs_dir, started, options=slurm or SlurmSpec(),
                             plugins=plugins, wait=wait)
    if executor == "ray":
        from sparseflow.studies.ray_backend import ray_backend

        # A self-started local cluster uses --jobs CPUs; a given cluster has its own.
        return ray_backend(groups, runs_dir, started, address=address, num_cpus=jobs,
                           plugins=plugins)
    if jobs == 1 or len(groups) <= 1:  # in this process, where preflight loaded the plugins
        return serial_backend(groups, runs_dir, started)
    return pool_backend(groups, runs_dir, started, jobs=min(jobs, len(groups)),
                        threads=max(1, default_jobs() // jobs), plugins=plugins)
