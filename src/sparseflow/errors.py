"""User-facing errors.

Everything a user can get wrong (a config value, a missing dataset folder, a corrupt file)
raises a :class:`SparseflowError` whose message is one line naming the problem and the fix.
The CLI prints that line and exits with code 2; library users catch the class.
"""

from __future__ import annotations

import errno
import os
import tempfile
from pathlib import Path


class SparseflowError(Exception):
    """Base class of every error caused by input rather than by a bug."""


class ConfigError(SparseflowError, ValueError):
    """A configuration value, file or override is invalid."""


class DataError(SparseflowError):
    """A dataset is missing, unreadable or malformed."""


class RunError(SparseflowError):
    """A run directory is in a state that forbids the requested operation."""


class OutputError(SparseflowError):
    """An output location cannot be written (a file in place of a folder, read-only, full)."""


#: What to do about the common OS errors, by errno.
_OS_HINTS: dict[int, str] = {
    errno.EROFS: "the file system is read-only; choose a writable location",
    errno.EACCES: "permission denied; choose a location you may write or fix its permissions",
    errno.EPERM: "not permitted; choose a location you may write or fix its permissions",
    errno.ENOTDIR: "a part of the path is a file, not a folder; choose another path",
    errno.EISDIR: "it is a directory; give a file path (or remove the directory)",
    errno.EEXIST: "it already exists; remove it or choose another path",
    errno.ENOTEMPTY: "it is a non-empty directory; remove it or choose another path",
    errno.ENOSPC: "the disk is full; free space or choose another location",
    errno.EDQUOT: "the disk quota is exhausted; free space or choose another location",
    errno.ENOENT: "no such file or folder; check the path",
    errno.EIO: "an I/O error; check the disk",
}


def os_error_message(exc: OSError) -> str:
    """One line for an OSError: ``<path>: <strerror>; <what to do>``."""
    path = exc.filename if exc.filename is not None else "?"
    if exc.filename2 is not None:
        path = f"{exc.filename} -> {exc.filename2}"
    reason = exc.strerror or str(exc)
    hint = _OS_HINTS.get(exc.errno or -1, "check the path, its permissions and the disk")
    return f"{path}: {reason}; {hint}"


def check_output_dir(path: str | os.PathLike[str], option: str) -> Path:
    """Refuse, before any work, an output folder that cannot be created or written.

    ``path`` may exist (it must then be a folder we can write in) or not (its nearest existing
    ancestor must be a writable folder, so it can be created later). Writability is tested by
    creating and removing a temporary file, which answers for read-only mounts, permissions
    and full disks alike (root ignores permission bits, a trial write does not). Nothing is
    left behind. ``option`` names the flag in the message (e.g. ``--out``).
    """
    target = Path(path)
    probe = target
    while not probe.exists():
        if probe.is_symlink():  # a dangling link: creating the folder would fail
            raise OutputError(f"{option} {target}: {probe} is a broken symbolic link; "
                              "choose another path")
        if probe.parent == probe:
            break
        probe = probe.parent
    if not probe.is_dir():
        what = "is" if probe == target else f"is inside {probe}, which is"
        raise OutputError(f"{option} {target} {what} a file, not a folder; choose another path "
                          "or remove the file")
    try:
        fd, name = tempfile.mkstemp(prefix=".sparseflow-write-test-", dir=probe)
        os.close(fd)
        os.unlink(name)
    except OSError as exc:
        hint = _OS_HINTS.get(exc.errno or -1, "choose another location")
        where = "" if probe == target else f" (in {probe}, where it would be created)"
        raise OutputError(f"{option} {target}: cannot write{where}: {exc.strerror}; "
                          f"{hint}") from None
    return target
