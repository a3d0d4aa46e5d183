"""Errors of the report (one line naming the problem and the fix; the CLI exits 2)."""

from __future__ import annotations

from sparseflow.errors import SparseflowError


class ReportError(SparseflowError):
    """The study cannot be reported as asked: no study, no finished run, an unknown axis."""
