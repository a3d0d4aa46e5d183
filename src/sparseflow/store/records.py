"""What the store holds about one run: the plan (:class:`PlannedRun`) and its state
(:class:`RunRecord`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sparseflow.store.errors import StoreError

#: Every status a run can have, in lifecycle order. 'interrupted': its driver stopped (a signal,
#: or it died) while the run trained; the next ``study run`` resumes it from its checkpoint.
STATUSES: tuple[str, ...] = ("planned", "running", "interrupted", "finished", "failed")
KINDS: tuple[str, ...] = ("sparse", "dense")


@dataclass(frozen=True)
class PlannedRun:
    """One run of a study plan.

    Attributes:
        run_key: ``"<config id>-s<seed>"``; unique in the study and the name of the run's
            directory under ``runs/``.
        config_id: the canonical hash of the run's config (``run_id`` in summary.json).
        seed: the replicate seed.
        kind: ``"sparse"`` or ``"dense"``.
        sparse_width: the width of the sparse network of the run's SC-SDC pair (None when the
            run belongs to no pair).
        dense_width: the width of the dense network of the pair (the run's own width for a
            dense run).
        cell: swept axis (dotted config key, plus ``"variant"``) → value of the run's cell.
        config: the full resolved experiment config, JSON-able.
    """

    run_key: str
    config_id: str
    seed: int
    kind: str
    sparse_width: int | None
    dense_width: int
    cell: dict[str, Any] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.run_key, str) or not self.run_key or "/" in self.run_key \
                or "\\" in self.run_key or self.run_key in (".", ".."):
            raise StoreError(f"run_key {self.run_key!r} must be a non-empty directory name")
        if self.kind not in KINDS:
            raise StoreError(f"run {self.run_key}: kind {self.kind!r} is not one of {KINDS}")


@dataclass(frozen=True)
class RunRecord(PlannedRun):
    """A planned run and what the store knows of it.

    Attributes:
        status: one of :data:`STATUSES`.
        error: the failure text of a failed run, else None.
        started_at / finished_at: ISO-8601 UTC timestamps (None until set).
        duration_s: training seconds from the run's summary (None until finished).
        summary: the run's summary.json content (None until finished).
        attempts: how many times the run was marked running (retries count).
    """

    status: str = "planned"
    error: str | None = None
    started_at: str | None = None
    finished_at: str | None = None
    duration_s: float | None = None
    summary: dict[str, Any] | None = None
    attempts: int = 0

    def planned(self) -> PlannedRun:
        """The plan part alone (e.g. to send to a worker without the bookkeeping)."""
        return PlannedRun(self.run_key, self.config_id, self.seed, self.kind, self.sparse_width,
                          self.dense_width, self.cell, self.config)
