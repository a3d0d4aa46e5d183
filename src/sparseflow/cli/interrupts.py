"""SIGINT and SIGTERM stop a command cleanly, and say so.

While a command runs, the first SIGINT (Ctrl-C) or SIGTERM raises :class:`Interrupted` in the
main thread. Everything between the signal and the exit is ordinary exception unwinding: the
study executor stops its workers and marks the runs they were training 'interrupted', a run
being trained in this process keeps its last checkpoint, and the error boundary
(``cli/main.py``) prints :data:`MESSAGE` and exits 128 + the signal number (130, 143). Later
signals are ignored so that this cleanup is not cut short (SIGKILL still stops everything; the
next invocation then recovers, see ``sparseflow study status``).
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

from sparseflow.utils import critical

MESSAGE = "interrupted; run the same command again to resume"
SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Interrupted(BaseException):
    """A SIGINT or SIGTERM arrived. A BaseException, like KeyboardInterrupt, so that the
    ``except Exception`` of code that records a failing run does not take it for a failure."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum

    @property
    def exit_code(self) -> int:
        """The shell's convention for a process stopped by a signal: 128 + its number."""
        return 128 + self.signum


class _Handler:
    def __init__(self) -> None:
        self.received: int | None = None

    def __call__(self, signum: int, frame: FrameType | None) -> None:
        if self.received is not None:
            return  # already stopping: let the cleanup finish
        self.received = signum
        if critical.defer(lambda: _raise(signum)):
            return  # raised when the file being written is complete (utils.critical)
        raise Interrupted(signum)


def _raise(signum: int) -> None:
    raise Interrupted(signum)


@contextmanager
def handled() -> Iterator[None]:
    """Install the handlers for the duration of a command (the previous ones come back after,
    so calling the CLI from Python, e.g. in tests, leaves the caller's handlers alone)."""
    if threading.current_thread() is not threading.main_thread():
        yield  # signals are only ever handled in the main thread
        return
    handler = _Handler()
    previous = {sig: signal.signal(sig, handler) for sig in SIGNALS}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
