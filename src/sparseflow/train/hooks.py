"""Hook points of the training loop.

The loop (:mod:`sparseflow.train.loop`) calls, in order, for every hook in its list:

- ``begin(state)``: once before the first epoch of this call (also after a resume);
- ``before_step(state)``: before each forward pass (``state.batch`` holds the batch);
- ``after_backward(state)``: after ``loss.backward()``, before the optimizer step — mask
  enforcement, coupled L2 and decoupled weight decay live here, in that order;
- ``after_step(state)``: after the optimizer step (weights re-masked here);
- ``end_epoch(state)``: after the epoch's evaluation was recorded in ``state.history``;
- ``end(state)``: once when training is complete (the epoch cap reached or a hook set
  ``state.stop``), before the final weights are chosen; not after a partial call.

A hook that keeps state across epochs implements ``state_dict()``/``load_state_dict()`` and a
unique ``name``; the checkpoint stores it, so a resumed run continues exactly.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

HOOK_POINTS = ("begin", "before_step", "after_backward", "after_step", "end_epoch", "end")


class Hook:
    """Base class with no-op hook points; subclass and override what you need."""

    name: str = ""

    def begin(self, state: Any) -> None:
        """Called once before training (or resumed training) starts."""

    def before_step(self, state: Any) -> None:
        """Called before each training step's forward pass."""

    def after_backward(self, state: Any) -> None:
        """Called after backward, before the optimizer step."""

    def after_step(self, state: Any) -> None:
        """Called after the optimizer step."""

    def end_epoch(self, state: Any) -> None:
        """Called after each epoch's evaluation."""

    def end(self, state: Any) -> None:
        """Called once when training is complete (not after training in parts)."""


def call(hooks: Sequence[Any], point: str, state: Any) -> None:
    """Call ``point`` on every hook that defines it, in list order."""
    for hook in hooks:
        fn = getattr(hook, point, None)
        if fn is not None:
            fn(state)


def stateful(hooks: Sequence[Any]) -> dict[str, Any]:
    """Hooks whose state must be checkpointed, by name (names must be unique)."""
    out: dict[str, Any] = {}
    for hook in hooks:
        if hasattr(hook, "state_dict"):
            name = getattr(hook, "name", "") or type(hook).__name__
            if name in out:
                raise ValueError(f"two stateful hooks are named {name!r}")
            out[name] = hook
    return out
