"""User-facing errors.

Everything a user can get wrong (a config value, a missing dataset folder, a corrupt file)
raises a :class:`SparseflowError` whose message is one line naming the problem and the fix.
The CLI prints that line and exits with code 2; library users catch the class.
"""

from __future__ import annotations


class SparseflowError(Exception):
    """Base class of every error caused by input rather than by a bug."""


class ConfigError(SparseflowError, ValueError):
    """A configuration value, file or override is invalid."""


class DataError(SparseflowError):
    """A dataset is missing, unreadable or malformed."""


class RunError(SparseflowError):
    """A run directory is in a state that forbids the requested operation."""
