"""The ``--slurm-*`` options of ``study run`` and ``reproduce``: each overrides the study
spec's ``slurm:`` section (see :class:`~sparseflow.studies.spec.SlurmSpec`)."""

from __future__ import annotations

from typing import Any

import typer
from pydantic import ValidationError

from sparseflow.errors import ConfigError

CLUSTER = typer.Option(None, "--slurm-cluster", help="slurm (sbatch job arrays) or local "
                       "(the same tasks as subprocesses of this machine).")
PARTITION = typer.Option(None, "--slurm-partition", help="Slurm partition.")
TIME_MIN = typer.Option(None, "--slurm-time-min", help="Time limit of one array task, "
                        "minutes (it checkpoints and requeues when reached).")
CPUS = typer.Option(None, "--slurm-cpus", help="CPUs per array task.")
GPUS = typer.Option(None, "--slurm-gpus", help="GPUs per array task.")
MEM_GB = typer.Option(None, "--slurm-mem-gb", help="Memory per array task, GB.")
PARALLELISM = typer.Option(None, "--slurm-array-parallelism", help="Array tasks running at "
                           "once.")
TASK_MINUTES = typer.Option(None, "--slurm-task-minutes", help="Training time one task aims "
                            "at, minutes (chunking by measured run durations).")
RUNS_PER_TASK = typer.Option(None, "--slurm-runs-per-task", help="Runs per task before any "
                             "duration is measured.")
SBATCH = typer.Option([], "--slurm-sbatch", help="Extra sbatch option NAME=VALUE "
                      "(repeatable), e.g. --slurm-sbatch account=proj42.")
NO_WAIT = typer.Option(False, "--no-wait", help="slurm executor: submit and exit; `sparseflow "
                       "study collect DIR` (or the same study run) records the results later.")


def _pairs(items: list[str]) -> dict[str, str]:
    out = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise ConfigError(f"--slurm-sbatch {item!r}: give NAME=VALUE, e.g. "
                              "--slurm-sbatch account=proj42")
        out[name.strip().removeprefix("--")] = value.strip()
    return out


def merged(spec_slurm: Any, *, cluster: str | None = None, partition: str | None = None,
           time_min: int | None = None, cpus: int | None = None, gpus: int | None = None,
           mem_gb: float | None = None, parallelism: int | None = None,
           task_minutes: float | None = None, runs_per_task: int | None = None,
           sbatch: list[str] | None = None) -> Any:
    """The spec's slurm section with the flags given applied (ConfigError for a bad value)."""
    from sparseflow.studies.spec import SlurmSpec

    flags = {"cluster": cluster, "partition": partition, "time_min": time_min,
             "cpus_per_task": cpus, "gpus_per_task": gpus, "mem_gb": mem_gb,
             "array_parallelism": parallelism, "task_minutes": task_minutes,
             "runs_per_task": runs_per_task}
    data = {**spec_slurm.model_dump(), **{k: v for k, v in flags.items() if v is not None}}
    data["sbatch"] = {**data["sbatch"], **_pairs(sbatch or [])}
    try:
        return SlurmSpec.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        key = ".".join(str(p) for p in err["loc"])
        raise ConfigError(f"slurm.{key}: {err['msg']} (got {err.get('input')!r})") from None


#: The ``--slurm-*`` parameters of a command (typer's names) → :func:`merged`'s keywords.
_PARAMS = {"slurm_cluster": "cluster", "slurm_partition": "partition",
           "slurm_time_min": "time_min", "slurm_cpus": "cpus", "slurm_gpus": "gpus",
           "slurm_mem_gb": "mem_gb", "slurm_array_parallelism": "parallelism",
           "slurm_task_minutes": "task_minutes", "slurm_runs_per_task": "runs_per_task",
           "slurm_sbatch": "sbatch"}


def from_params(spec_slurm: Any, params: dict[str, Any]) -> Any:
    """:func:`merged` from a command's parameters (``typer.Context.params``), so that every
    command taking the ``--slurm-*`` options applies them the same way."""
    return merged(spec_slurm, **{kw: params.get(name) for name, kw in _PARAMS.items()})
