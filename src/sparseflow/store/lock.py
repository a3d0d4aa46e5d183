"""The study directory's lock: one driver (``sparseflow study run``) per study at a time.

``fcntl.flock`` on ``DIR/.lock``: the kernel drops the lock when the holder's last descriptor
of the file closes, which includes the holder dying by SIGKILL, so a crashed driver never
leaves a stale lock behind. The holder's pid is written into the file only to name it in the
error message; the file is never deleted (deleting a flock'ed file lets two processes lock two
different files of the same name).

flock locks belong to the open file description, which a ``fork`` shares: a worker process
forked by the driver keeps the lock alive until it exits. Start workers with the ``spawn`` or
``forkserver`` method (or let them die with the driver) if a restart must not wait for them.
"""

from __future__ import annotations

import fcntl
import os
import time
from pathlib import Path
from types import TracebackType

from sparseflow.store.errors import StudyBusyError

LOCK_NAME = ".lock"
#: A reader probing the lock (:func:`driver_alive`) holds it shared for microseconds; a driver
#: that finds it taken retries this many times, this far apart, before calling it busy.
_ATTEMPTS, _PAUSE_S = 5, 0.02


class StudyLock:
    """Exclusive, non-blocking lock on a study directory (a context manager).

    ``with StudyLock(dir): ...`` raises :class:`StudyBusyError` at once when another process
    (or another ``StudyLock`` of this process) holds it.
    """

    def __init__(self, study_dir: str | Path) -> None:
        self.study_dir = Path(study_dir)
        self.path = self.study_dir / LOCK_NAME
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        """Whether this object currently holds the lock."""
        return self._fd is not None

    def acquire(self) -> None:
        """Take the lock or raise :class:`StudyBusyError` naming the holder's pid."""
        if self._fd is not None:
            return
        self.study_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            _flock(fd, fcntl.LOCK_EX)
        except BlockingIOError:
            holder = _read_pid(fd)
            os.close(fd)
            raise StudyBusyError(f"another `sparseflow study run` is active on {self.study_dir} "
                                 f"(pid {holder}); wait for it or stop it") from None
        except BaseException:
            os.close(fd)
            raise
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd

    def release(self) -> None:
        """Release the lock (a no-op when not held)."""
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        try:
            os.ftruncate(fd, 0)  # no stale pid for the next reader of the file
            fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)

    def __enter__(self) -> StudyLock:
        self.acquire()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.release()

    def __repr__(self) -> str:
        return f"StudyLock({str(self.study_dir)!r}, held={self.held})"


def _flock(fd: int, kind: int) -> None:
    """Non-blocking flock, retried briefly (see ``_ATTEMPTS``); BlockingIOError when held."""
    for attempt in range(_ATTEMPTS):
        try:
            fcntl.flock(fd, kind | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            if attempt == _ATTEMPTS - 1:
                raise
            time.sleep(_PAUSE_S)


def driver_alive(study_dir: str | Path) -> bool | None:
    """Whether a driver holds the lock of ``study_dir`` now (None: the lock cannot be read).

    Only when no driver holds it are runs the store says are 'running' stale: their driver
    died (SIGKILL, a crash) without marking them. Reads only: the probe takes the lock shared
    for an instant through a read-only descriptor, and writes nothing.
    """
    try:
        fd = os.open(Path(study_dir) / LOCK_NAME, os.O_RDONLY)
    except FileNotFoundError:
        return False  # no driver ever ran here
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    except OSError:
        return None
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return False
    finally:
        os.close(fd)


def _read_pid(fd: int) -> str:
    """The pid the holder wrote, or 'unknown' (it may not have written it yet)."""
    text = os.pread(fd, 32, 0).decode(errors="replace").strip()
    return text if text.isdigit() else "unknown"
