"""The Slurm executor's record of its array tasks: ``DIR/slurm/jobs.json``, beside the store.

Written only by the process that holds the study lock (the driver, or ``study collect``),
atomically; read by anyone (``study status``). One entry per submitted task: its submitit job
id, the run groups it trains, its attempt, and whether the driver has *settled* it (recorded
the outcome of every run it was given). An unsettled task that is still active on the cluster
belongs to no driver: the next ``study run`` waits for it instead of submitting its runs
again, and ``study collect`` records what it finished.

The store's tables stay as they are (the Slurm executor is optional): the job record is a
small JSON file, rewritten whole on every change.
"""

from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from sparseflow.store.errors import StoreError
from sparseflow.utils.atomic import atomic_write_bytes, read_json

SLURM_DIR = "slurm"
JOBS_FILE = "jobs.json"
#: submitit's folder for pickles and logs; %j: the job id.
LOGS = "logs/%j"

#: Slurm states (sacct) of a task that may still write run directories.
ACTIVE_STATES = frozenset({"PENDING", "RUNNING", "REQUEUED", "RESIZING", "SUSPENDED",
                           "CONFIGURING", "COMPLETING", "REQUEUE_HOLD", "REQUEUE_FED",
                           "PREEMPTED", "SIGNALING", "STAGE_OUT", "UNKNOWN"})


@dataclass
class TaskRecord:
    """One submitted array task (a chunk of run groups)."""

    job_id: str
    cluster: str
    groups: list[list[str]]  # run keys of each group the task trains
    attempt: int = 0
    submitted_at: float = field(default_factory=time.time)
    state: str = "PENDING"  # the last state seen
    settled: bool = False  # every run of the task has its outcome recorded
    error: str = ""  # why the task itself failed, when it did

    @property
    def run_keys(self) -> list[str]:
        """Every run key of the task, in group order."""
        return [k for g in self.groups for k in g]


def jobs_path(study_dir: str | Path) -> Path:
    """``DIR/slurm/jobs.json``."""
    return Path(study_dir) / SLURM_DIR / JOBS_FILE


def load_tasks(study_dir: str | Path) -> list[TaskRecord]:
    """The recorded tasks of ``study_dir`` (empty when none was ever submitted)."""
    path = jobs_path(study_dir)
    if not path.is_file():
        return []
    try:
        data = read_json(path)
        return [TaskRecord(**t) for t in data["tasks"]]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise StoreError(f"cannot read {path} ({exc}); move it aside (the runs it names are "
                         "then trained again by the next `study run`)") from None


def save_tasks(study_dir: str | Path, tasks: list[TaskRecord]) -> None:
    """Rewrite the record atomically (only under the study lock)."""
    import json

    payload = {"tasks": [asdict(t) for t in tasks]}
    atomic_write_bytes(jobs_path(study_dir), json.dumps(payload, indent=1).encode())


def folder(study_dir: str | Path) -> Path:
    """submitit's folder of the study (``%j`` in it stands for the job id)."""
    return (Path(study_dir) / SLURM_DIR / LOGS).resolve()


def _pid_alive(pid: int) -> bool:
    """Whether the local controller ``pid`` still runs: a live process (not a zombie) whose
    command line is submitit's (a reused pid is another program)."""
    proc = Path(f"/proc/{pid}")
    if proc.is_dir():
        try:
            state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
            cmdline = (proc / "cmdline").read_bytes()
        except OSError:
            return False
        return state not in ("Z", "X") and b"submitit" in cmdline
    try:  # no /proc (not Linux)
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def attach(study_dir: str | Path, task: TaskRecord) -> Any:
    """The submitit job of a recorded task, re-attached by its id (no process handle)."""
    import submitit

    cls = submitit.LocalJob if task.cluster == "local" else submitit.SlurmJob
    return cls(folder(study_dir), task.job_id)


def result_of(job: Any) -> tuple[str, Any] | None:
    """``("success", value)`` or ``("error", traceback text)`` from the job's result pickle,
    or None when it wrote none (still running, or it died)."""
    from submitit.core.utils import pickle_load

    path = job.paths.result_pickle
    if not path.is_file():
        return None
    try:
        return tuple(pickle_load(path))  # type: ignore[return-value]
    except (OSError, EOFError, ValueError) as exc:  # torn by a killed task: a failure
        return ("error", f"unreadable result {path.name}: {exc}")


def state_of(job: Any, cluster: str) -> str:
    """The task's state now: Slurm's (sacct, through submitit) or, for local tasks, RUNNING
    while its controller process lives, FINISHED when it left a result, else DIED."""
    if result_of(job) is not None:
        return "FINISHED" if cluster == "local" else _slurm_state(job, "COMPLETED")
    if cluster == "local":
        proc = getattr(job, "_process", None)
        alive = proc.poll() is None if proc is not None else _pid_alive(int(job.job_id))
        return "RUNNING" if alive else "DIED"
    return _slurm_state(job, "UNKNOWN")


def _slurm_state(job: Any, default: str) -> str:
    try:
        state = str(job.state).split()[0].upper()  # "CANCELLED by 123" -> CANCELLED
    except Exception:  # noqa: BLE001 - sacct missing or failing: say so, decide later
        return default
    return state or default


def is_active(state: str) -> bool:
    """Whether a task in ``state`` may still write run directories."""
    return state in ACTIVE_STATES or state == "RUNNING"


def task_states(study_dir: str | Path, tasks: list[TaskRecord]) -> list[str]:
    """The state of each task for ``study status``: the recorded one for a settled task, else
    asked now (submitit: sacct on Slurm, the controller process locally); reads only."""
    out = []
    for task in tasks:
        if task.settled:
            out.append(task.state)
            continue
        try:
            out.append(state_of(attach(study_dir, task), task.cluster))
        except ImportError:  # submitit missing here: the last state seen
            out.append(f"{task.state} (recorded)")
    return out
