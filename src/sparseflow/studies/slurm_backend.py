"""The Slurm backend: the planned run groups become one submitit job array; the driver stays
the only writer of the study store.

A task is a chunk of run groups (:func:`chunk_groups`, sized to ``slurm.task_minutes``). It
trains them with :func:`~sparseflow.studies.worker.execute_group`, as a local worker does, and
writes only their run directories (atomic files); the study directory must therefore be on a
filesystem the nodes share, at the same path. The driver records a run when its directory
holds a ``summary.json`` (checked against the plan, as ``study collect`` and the rebuild do),
while the task still runs, and a failed run from the error the task returns.

Preemption and time limits: a task is :class:`SlurmTask`, checkpointable the submitit way, so
on Slurm's warning signal it requeues itself with the same chunk; its finished runs are then
read back and the unfinished ones resume from their last checkpoint. A task that dies without a
result (killed, out of memory, a node lost) is resubmitted up to ``slurm.max_retries`` times;
then its unfinished runs count as failed, retried by the next ``study run``.

A driver that stops (Ctrl-C, ``--no-wait``) leaves the tasks running: they are recorded in
``DIR/slurm/jobs.json`` (:mod:`~sparseflow.studies.slurm_jobs`), the next ``study run`` waits
for them instead of submitting their runs twice, and ``study collect DIR`` records what they
finished meanwhile.
"""

from __future__ import annotations

import math
import os
import shutil
import signal
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from sparseflow.errors import ConfigError
from sparseflow.studies.grouping import RunGroup
from sparseflow.studies.slurm_jobs import (
    TaskRecord,
    attach,
    folder,
    is_active,
    load_tasks,
    result_of,
    save_tasks,
    state_of,
)
from sparseflow.studies.spec import SlurmSpec
from sparseflow.studies.worker import Outcome, execute_group

#: Seconds between two looks at the tasks (run directories, results, states).
POLL_S = {"local": 0.5, "slurm": 20.0}
#: Items of one group: (run key, config).
Items = list[tuple[str, dict[str, Any]]]
#: What a task runs on each of its groups: ``(items, runs_dir) -> outcomes``.
Execute = Callable[[Items, str], list[Outcome]]
Started = Callable[[str], None]


def import_submitit() -> Any:
    """submitit, or a one-line ConfigError naming the extra to install."""
    try:
        import submitit
    except ImportError:
        raise ConfigError("the slurm executor needs submitit: pip install "
                          "'sparseflow[slurm]'") from None
    return submitit


def check_slurm(options: SlurmSpec) -> None:
    """Before anything is written: submitit is installed, and for ``cluster: slurm`` sbatch
    is on PATH (this is a host that can submit)."""
    import_submitit()
    if options.cluster == "slurm" and shutil.which("sbatch") is None:
        raise ConfigError("the slurm executor found no sbatch on PATH: run the driver on the "
                          "cluster's login node, or set slurm.cluster: local (--slurm-cluster "
                          "local) to run the tasks on this machine")


class SlurmTask:
    """The body of one array task (runs on a compute node): trains its groups in order and
    returns ``[(run_key, ok, error)]``. Checkpointable (submitit calls :meth:`checkpoint` on
    the preemption or time-limit signal): the requeued task is the same chunk, which reads its
    finished runs back and resumes the others from their checkpoints."""

    def __init__(self, execute: Execute = execute_group) -> None:
        self.execute = execute

    def __call__(self, groups: list[Items], runs_dir: str, threads: int,
                 plugins: tuple[str, ...] = ()) -> list[tuple[str, bool, str]]:
        _init_task(threads, plugins)
        out = []
        for items in groups:
            out.extend((o.run_key, o.ok, o.error) for o in self.execute(items, runs_dir))
        return out

    def checkpoint(self, *args: Any, **kwargs: Any) -> Any:
        """The same task again (submitit requeues it)."""
        from submitit.helpers import DelayedSubmission

        return DelayedSubmission(self, *args, **kwargs)


def _init_task(threads: int, plugins: tuple[str, ...]) -> None:
    import torch

    import sparseflow  # noqa: F401 - fills the component registries the configs name
    from sparseflow.plugins import load_plugins

    torch.set_num_threads(max(1, threads))
    if os.environ.get("SUBMITIT_EXECUTOR") == "local" and sys.platform.startswith("linux"):
        # A local task must not outlive its controller (killed): a resubmitted task would
        # then train the same run directories while the orphan still writes them.
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    load_plugins(plugins)


def runs_per_task(options: SlurmSpec, durations: dict[str, list[float]]) -> int:
    """Runs one task gets: ``task_minutes`` over the median run duration measured so far in
    the study, else ``runs_per_task``."""
    seconds = sorted(s for values in durations.values() for s in values if s > 0)
    if not seconds:
        return options.runs_per_task
    median = seconds[len(seconds) // 2]
    return max(1, math.floor(options.task_minutes * 60 / median))


def chunk_groups(groups: list[RunGroup], per_task: int) -> list[list[RunGroup]]:
    """Consecutive groups, at most ``per_task`` runs a chunk (a larger group: a chunk alone;
    groups are never split, so a group resumes from its own checkpoint)."""
    chunks: list[list[RunGroup]] = []
    size = 0
    for group in groups:
        if chunks and size + len(group.runs) <= per_task:
            chunks[-1].append(group)
            size += len(group.runs)
        else:
            chunks.append([group])
            size = len(group.runs)
    return chunks


def make_executor(study_dir: Path, options: SlurmSpec) -> Any:
    """A submitit executor with the study's options (``cluster: local``: the Slurm-only ones
    are left out by submitit)."""
    submitit = import_submitit()
    ex = submitit.AutoExecutor(folder(study_dir), cluster=options.cluster)
    params: dict[str, Any] = {
        "name": f"sparseflow-{study_dir.name}", "timeout_min": options.time_min,
        "cpus_per_task": options.cpus_per_task, "gpus_per_node": options.gpus_per_task,
        "tasks_per_node": 1, "nodes": 1, "mem_gb": options.mem_gb,
        "slurm_partition": options.partition,
        "slurm_array_parallelism": options.array_parallelism,
        "slurm_additional_parameters": dict(options.sbatch) or None,
        "slurm_setup": list(options.setup) or None,
        "local_setup": list(options.setup) or None,
    }
    try:
        ex.update_parameters(**{k: v for k, v in params.items() if v is not None})
    except (NameError, ValueError, AssertionError) as exc:
        raise ConfigError(f"slurm options: {' '.join(str(exc).split())[:300]}") from None
    return ex


def _items(group: RunGroup) -> Items:
    return [(r.run_key, r.config) for r in group.runs]


def _one_line(text: str, limit: int = 500) -> str:
    lines = [line.strip() for line in str(text).strip().splitlines() if line.strip()]
    # A traceback's last line names the exception; keep it first.
    return " ".join(lines[-1:] if lines else [""])[:limit]


class _Driver:
    """The driver's side: submits chunks, watches them, turns run directories and task
    results into Outcomes. Writes ``jobs.json`` only; the store is the caller's."""

    def __init__(self, study_dir: Path, options: SlurmSpec, execute: Execute,
                 plugins: tuple[str, ...], by_key: dict[str, RunGroup]) -> None:
        self.study_dir, self.options, self.plugins = study_dir, options, plugins
        self.runs_dir = str((study_dir / "runs").resolve())
        self.task = SlurmTask(execute)
        self.by_key = by_key
        self.tasks = load_tasks(study_dir)
        self.jobs: dict[str, Any] = {}  # job id -> its submitit job (this driver's or attached)
        self.pending: dict[str, set[str]] = {}  # job id -> its run keys without an outcome
        self._executor: Any = None

    def save(self) -> None:
        save_tasks(self.study_dir, self.tasks)

    def job(self, task: TaskRecord) -> Any:
        if task.job_id not in self.jobs:
            self.jobs[task.job_id] = attach(self.study_dir, task)
        return self.jobs[task.job_id]

    def submit(self, chunks: list[list[RunGroup]], attempt: int = 0) -> None:
        """One job array of ``chunks`` (each a task), recorded before the driver waits."""
        if not chunks:
            return
        if self._executor is None:
            self._executor = make_executor(self.study_dir, self.options)
        args = [[_items(g) for g in chunk] for chunk in chunks]
        n = len(chunks)
        jobs = self._executor.map_array(self.task, args, [self.runs_dir] * n,
                                        [self.options.cpus_per_task] * n, [self.plugins] * n)
        for job, chunk in zip(jobs, chunks, strict=True):
            record = TaskRecord(job_id=str(job.job_id), cluster=self.options.cluster,
                                groups=[g.keys for g in chunk], attempt=attempt)
            self.tasks.append(record)
            self.jobs[record.job_id] = job
            self.pending[record.job_id] = set(record.run_keys)
        self.save()

    def adopt(self, wanted: set[str]) -> set[str]:
        """Unsettled tasks of earlier drivers: those still active are watched again (their
        runs in ``wanted`` are not submitted twice), the others are settled (their unfinished
        runs are submitted anew). Returns the run keys adopted."""
        adopted: set[str] = set()
        for task in self.tasks:
            if task.settled:
                continue
            state = state_of(self.job(task), task.cluster)
            task.state = state
            keys = set(task.run_keys) & wanted
            if is_active(state) and keys:
                self.pending[task.job_id] = keys
                adopted |= set(task.run_keys)
            elif not is_active(state):
                task.settled = True  # whatever it finished is on disk: reconcile recorded it
        self.save()
        return adopted

    def finished_runs(self, only: str | None = None) -> Iterator[Outcome]:
        """Outcomes of the runs whose directory now holds a summary (while tasks still run);
        ``only``: of that job's runs."""
        from sparseflow.store.rundir import read_run_outputs

        for job_id, keys in list(self.pending.items()):
            if only is not None and job_id != only:
                continue
            for key in sorted(keys):
                try:
                    outputs = read_run_outputs(Path(self.runs_dir) / key)
                except Exception as exc:  # noqa: BLE001 - a malformed file: a failed run
                    keys.discard(key)
                    yield Outcome(key, False, error=str(exc))
                    continue
                if outputs is not None:
                    keys.discard(key)
                    yield Outcome(key, True, outputs.summary, outputs.metrics, outputs.gradflow)

    def ended_tasks(self, retries: bool = True) -> Iterator[Outcome]:
        """For each watched task that ended: the runs it finished, failed Outcomes for the
        runs it failed, and for a task that died without a result a resubmission of its
        unfinished groups (``retries`` and attempts left) or failed Outcomes."""
        for task in self.tasks:
            if task.settled or task.job_id not in self.pending:
                continue
            job = self.job(task)
            state = state_of(job, task.cluster)
            if state != task.state:
                task.state = state
                self.save()
            if is_active(state):
                continue
            yield from self.finished_runs(only=task.job_id)
            keys = self.pending.pop(task.job_id)
            errors = self._errors(task, job, state)
            retry = sorted(k for k in keys if k not in errors and k in self.by_key)
            if retries and task.error and retry and task.attempt < self.options.max_retries:
                groups = list({id(self.by_key[k]): self.by_key[k] for k in retry}.values())
                keys -= set(retry)
                task.settled = True
                self.submit([groups], attempt=task.attempt + 1)
            for key in sorted(keys):
                if key in errors or task.error:
                    yield Outcome(key, False, error=errors.get(key) or task.error)
            task.settled = True
            self.save()

    @staticmethod
    def _errors(task: TaskRecord, job: Any, state: str) -> dict[str, str]:
        """Run key -> error of the runs the ended task failed; a task that failed itself (an
        exception outside any run, or no result: killed) has ``task.error`` set instead."""
        result = result_of(job)
        if result is not None and result[0] == "success":
            return {k: e for k, ok, e in result[1] if not ok}
        why = (_one_line(result[1]) if result is not None
               else f"ended without a result (state {state})")
        task.error = f"slurm task {task.job_id} failed: {why}"
        return {}

    def waiting(self) -> bool:
        """Whether a watched task has not ended yet."""
        return bool(self.pending)

    def release(self) -> None:
        """The driver stops waiting: the tasks go on; jobs.json says which ones."""
        for task in self.tasks:
            if task.job_id in self.pending and not task.settled:
                task.state = state_of(self.job(task), task.cluster)
        self.save()


def slurm_backend(groups: list[RunGroup], runs_dir: str, started: Started, *,
                  options: SlurmSpec, plugins: tuple[str, ...] = (), wait: bool = True,
                  execute: Execute = execute_group) -> Iterator[Outcome]:
    """Run ``groups`` as one submitit job array; yields Outcomes as runs finish (their run
    directory verified by the caller) and as tasks fail. ``wait=False``: submit, record the
    tasks and return (``study collect`` records the results later). Tasks of an earlier
    driver still active on the cluster are waited for, not submitted again."""
    if not groups:
        return
    import_submitit()
    from sparseflow.studies.estimate import stored_durations

    study_dir = Path(runs_dir).resolve().parent
    by_key = {k: g for g in groups for k in g.keys}
    driver = _Driver(study_dir, options, execute, plugins, by_key)
    adopted = driver.adopt(set(by_key))
    fresh = [g for g in groups if not set(g.keys) & adopted]
    for group in groups:
        for key in group.keys:
            started(key)
    _, durations = stored_durations(study_dir)
    driver.submit(chunk_groups(fresh, runs_per_task(options, durations)))
    if not wait:
        driver.release()
        return
    poll = POLL_S[options.cluster]
    try:
        while driver.waiting():
            yield from driver.finished_runs()
            yield from driver.ended_tasks()
            if driver.waiting():
                time.sleep(poll)
    finally:
        driver.release()


def collect(study_dir: Path, settle: Callable[[Outcome], None]) -> int:
    """``study collect``: hand every outcome the recorded tasks have reached to ``settle``
    (the caller records it, under the lock): the runs finished on disk, and the failures of
    ended tasks (no resubmission: the next ``study run`` retries them). Returns how many
    tasks are still active. Idempotent: a settled task is not read again, and the caller
    skips a run already recorded."""
    import_submitit()
    driver = _Driver(study_dir, SlurmSpec(cluster="local"), execute_group, (), {})
    for task in driver.tasks:
        if not task.settled:
            driver.pending[task.job_id] = set(task.run_keys)
    for out in driver.finished_runs():
        settle(out)
    for out in driver.ended_tasks(retries=False):
        settle(out)
    driver.save()
    return sum(not t.settled for t in driver.tasks)
