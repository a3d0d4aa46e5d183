"""The mutable state the training loop and its hooks share."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn


@dataclass
class TrainState:
    """Everything one run's loop touches.

    ``epoch`` counts completed epochs; ``step`` counts training steps (batches); ``history``
    holds one record (dict of floats) per completed epoch; hooks put their own per-run values in
    ``extra``. A hook sets ``skip_update`` in ``after_backward`` to have the loop take no
    optimizer step on this batch (a mask-update step of dynamic sparse training); the loop
    clears it after the ``after_step`` hooks.
    """

    model: nn.Module
    optimizer: torch.optim.Optimizer
    generators: dict[str, torch.Generator]
    epochs: int
    steps_per_epoch: int
    epoch: int = 0
    step: int = 0
    batch: tuple[Tensor, Tensor] | None = None
    loss: Tensor | None = None
    history: list[dict[str, float]] = field(default_factory=list)
    stop: bool = False
    skip_update: bool = False
    stop_reason: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def last(self) -> dict[str, float]:
        """The latest epoch record (empty before the first epoch)."""
        return self.history[-1] if self.history else {}
