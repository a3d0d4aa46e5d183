"""Reading what a finished run directory holds, for recording it in the store.

The run-directory contract (DESIGN.md): ``summary.json`` is written last and atomically, so its
presence means the run finished and the series beside it are complete. Reading the files here
(rather than importing the training code) keeps the store below ``train`` in the layering.

What a run directory holds is not trusted blindly: :func:`mismatch` checks that its summary and
config belong to the planned run (run id and seed) and that the metric series has one row per
epoch trained; :func:`damage` notices a finished run whose directory is gone or whose
``final.pt`` no longer loads.
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sparseflow.store.errors import StoreError
from sparseflow.utils.atomic import read_json

SUMMARY, METRICS, GRADFLOW, CONFIG, FINAL = (
    "summary.json", "metrics.json", "gradflow.json", "config.json", "final.pt")


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


def mismatch(run: Any, run_dir: str | Path, summary: dict[str, Any],
             metrics: list[dict[str, Any]]) -> str | None:
    """Why the outputs read from ``run_dir`` are not the planned ``run``'s result, or None.

    ``run`` has ``config_id`` and ``seed`` (a :class:`~sparseflow.store.PlannedRun`). Checks:
    summary.json's ``run_id`` and ``seed``, config.json's ``id`` and ``config.seed`` (when the
    file is there), and one metric row per epoch of the summary.
    """
    run_dir = Path(run_dir)
    fix = f"remove {run_dir} to train the run again"
    got = (summary.get("run_id"), summary.get("seed"))
    if got != (run.config_id, run.seed):
        return (f"{run_dir / SUMMARY} is the result of run {got[0]} seed {got[1]}, not of "
                f"{run.config_id} seed {run.seed}; {fix}")
    if (run_dir / CONFIG).is_file():
        config = _load(run_dir / CONFIG, dict)
        seed = config.get("config", {}).get("seed") if isinstance(config.get("config"),
                                                                  dict) else None
        if (config.get("id"), seed) != (run.config_id, run.seed):
            return (f"{run_dir / CONFIG} is of run {config.get('id')} seed {seed}, not of "
                    f"{run.config_id} seed {run.seed}; {fix}")
    epochs = summary.get("epochs")
    if epochs != len(metrics):
        return (f"{run_dir / METRICS} has {len(metrics)} epoch rows but {SUMMARY} says "
                f"{epochs} epochs (a truncated or foreign file); {fix}")
    return None


def damage(run_dir: str | Path) -> str | None:
    """What is wrong with a finished run's directory (None: nothing seen).

    Cheap for an intact run: presence and size of ``final.pt``, its zip directory and the CRC
    of its pickle record. A ``final.pt`` modified after ``summary.json`` was written (the
    training code writes it before) is loaded in full, ``torch.load(weights_only=True)``.
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        return "its run directory is missing"
    summary, final = run_dir / SUMMARY, run_dir / FINAL
    if not summary.is_file():
        return f"{SUMMARY} is missing"
    if not final.is_file() or final.stat().st_size == 0:
        return f"{FINAL} is missing or empty"
    try:
        with zipfile.ZipFile(final) as archive:
            pickles = [n for n in archive.namelist() if n.endswith("/data.pkl")]
            if len(pickles) != 1:
                return f"{FINAL} is not a saved state_dict"
            archive.read(pickles[0])  # checks the record's CRC
            if final.stat().st_mtime_ns > summary.stat().st_mtime_ns:
                bad = archive.testzip()
                if bad is not None:
                    return f"{FINAL} is damaged (record {bad})"
                _full_load(final)
    except Exception as exc:  # noqa: BLE001 - any failure to read means a damaged file
        return f"{FINAL} does not load ({type(exc).__name__}: {' '.join(str(exc).split())[:80]})"
    return None


def _full_load(path: Path) -> None:
    import torch  # only here: readers of the store need no torch otherwise

    state = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(state, dict):
        raise ValueError(f"holds a {type(state).__name__}, not a state_dict")
