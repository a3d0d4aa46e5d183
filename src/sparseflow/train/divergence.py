"""Divergence: a run whose training loss stopped being a finite number.

**Definition**: a run *diverged* iff the running training loss of some completed epoch is not
finite (NaN or ±inf; the epoch's loss sums every step's loss, so one non-finite step is enough),
or its final training loss (eval mode, on the final weights) is not finite. Training stops at the
end of the first such epoch, with ``stop_reason`` ``"diverged: ..."``: every later step would
update NaN weights, which is compute spent on nothing. The run is then finished as usual (its
final evaluation and summary are written) and ``summary.json`` says ``"diverged": true``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from sparseflow.train.hooks import Hook

STOP_REASON = "diverged"


def diverged_epoch(record: Mapping[str, Any]) -> bool:
    """Whether one epoch record of ``state.history`` shows divergence."""
    loss = record.get("train_loss")
    return loss is not None and not math.isfinite(loss)


def diverged(history: Sequence[Mapping[str, Any]]) -> bool:
    """Whether any epoch of ``history`` shows divergence (see the module docstring)."""
    return any(diverged_epoch(r) for r in history)


def stop_reason(record: Mapping[str, Any]) -> str:
    """The ``stop_reason`` of a run stopped at the epoch ``record``."""
    return f"{STOP_REASON}: training loss {record['train_loss']} in epoch {record['epoch']}"


class StopOnDivergence(Hook):
    """Stops training at the end of the first epoch whose training loss is not finite.

    Stateless (it reads ``state.history``), so a resumed run needs nothing from the checkpoint.
    Placed after early stopping in the hook list, so that its reason wins when both fire.
    """

    def end_epoch(self, state: Any) -> None:
        """Set ``state.stop`` when the epoch just recorded diverged."""
        if diverged_epoch(state.history[-1]):
            state.stop = True
            state.stop_reason = stop_reason(state.history[-1])

    def summarize(self, state: Any) -> dict[str, Any]:
        """``{"diverged": bool}`` from the series (the summary adds the final-loss check)."""
        return {"diverged": diverged(state.history)}
