"""Errors of the run store (each message is one line naming the problem and the fix)."""

from __future__ import annotations

from sparseflow.errors import SparseflowError


class StoreError(SparseflowError):
    """The study store is missing, unreadable, too new, or was asked something impossible."""


class StudyMismatchError(StoreError):
    """The study directory already holds a study with a different base configuration."""


class StudyBusyError(StoreError):
    """Another process holds the study directory's lock (a driver is already running)."""


class StoreCorruptError(StoreError):
    """``study.sqlite`` is damaged (SQLite reports a malformed file, or a stored value does not
    decode); the study can be rebuilt from its run directories."""
