"""Critical sections: code that a signal handler must not interrupt half-way.

A SIGINT handler that raises (``cli/interrupts.py``) can fire inside any Python line, including
the middle of ``torch.save``, whose writer then fails in its own clean-up and replaces the
interrupt by an unrelated error. Inside :func:`critical` such a handler calls :func:`defer`
instead of raising; the deferred action (raising the interrupt) runs when the outermost
critical section ends, once the file is complete and in place. Signals are only handled in the
main thread, so a process-wide state is enough.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

_depth = 0
_pending: Callable[[], None] | None = None


@contextmanager
def critical() -> Iterator[None]:
    """Run the body with interrupting signals deferred to its end (nestable)."""
    global _depth, _pending
    _depth += 1
    try:
        yield
    finally:
        _depth -= 1
        if _depth == 0 and _pending is not None:
            action, _pending = _pending, None
            action()


def defer(action: Callable[[], None]) -> bool:
    """From a signal handler: inside a critical section, keep ``action`` for its end and return
    True; outside one, return False (the handler acts at once)."""
    global _pending
    if _depth == 0:
        return False
    if _pending is None:
        _pending = action
    return True
