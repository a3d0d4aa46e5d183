"""Reading what a finished run directory holds, for recording it in the store.

The run-directory contract (DESIGN.md): ``summary.json`` is written last and atomically, so its
presence means the run finished and the series beside it are complete. Reading the files here
(rather than importing the training code) keeps the store below ``train`` in the layering.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sparseflow.store.errors import StoreError
from sparseflow.utils.atomic import read_json

SUMMARY, METRICS, GRADFLOW = "summary.json", "metrics.json", "gradflow.json"


@dataclass(frozen=True)
class RunOutputs:
    """The three things :meth:`StudyStore.record_finished` takes, read from a run directory."""

    summary: dict[str, Any]
    metrics: list[dict[str, Any]]
    gradflow: list[dict[str, Any]]


def read_run_outputs(run_dir: str | Path) -> RunOutputs | None:
    """The outputs of the finished run in ``run_dir``, or None if it has not finished.

    ``gradflow.json`` is absent when the run measured no gradient flow (an empty series).
    A malformed file raises :class:`StoreError` naming it.
    """
    run_dir = Path(run_dir)
    if not (run_dir / SUMMARY).is_file():
        return None
    summary = _load(run_dir / SUMMARY, dict)
    metrics = _load(run_dir / METRICS, list) if (run_dir / METRICS).is_file() else []
    gradflow = _load(run_dir / GRADFLOW, list) if (run_dir / GRADFLOW).is_file() else []
    return RunOutputs(summary, metrics, gradflow)


def _load(path: Path, kind: type) -> Any:
    try:
        value = read_json(path)
    except (OSError, ValueError) as exc:
        raise StoreError(f"cannot read {path} ({exc}); remove the run directory to rerun it") \
            from exc
    if not isinstance(value, kind):
        raise StoreError(f"{path} holds a {type(value).__name__}, expected a {kind.__name__}; "
                         "remove the run directory to rerun it")
    return value
