"""Explicit regularizers applied as training hooks.

Coupled L2 (the paper's "L2") adds λ·w to the gradient *after* the raw gradient has been read
by probes and masked, so gradient-flow measures never include the regularization term, and the
optimizer's adaptive statistics see it (which is what makes Adam + L2 differ from AdamW).
Decoupled weight decay shrinks the weights before the step: w ← w − lr·wd·w, and not at all
when a hook skips the step (``state.skip_update``, a mask update of dynamic sparse training).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from sparseflow.prunable import prunable_parameters


def decay_targets(model: nn.Module, include_all: bool) -> list[nn.Parameter]:
    """Parameters that L2 / weight decay act on: prunable weights, or every parameter."""
    if include_all:
        return [p for p in model.parameters() if p.requires_grad]
    return list(prunable_parameters(model).values())


class CoupledL2:
    """Adds ``coef · w`` to each target's gradient (after masking, before the step)."""

    def __init__(self, params: Sequence[nn.Parameter], coef: float) -> None:
        self.params = list(params)
        self.coef = coef

    @torch.no_grad()
    def after_backward(self, state: object) -> None:
        """grad ← grad + λ·w. Pruned weights are 0, so pruned gradients stay 0."""
        for p in self.params:
            if p.grad is not None:
                p.grad.add_(p, alpha=self.coef)


class DecoupledWeightDecay:
    """Multiplies each target by ``1 − s·wd`` before the optimizer step (AdamW-style).

    ``s`` is the current learning rate (torch's AdamW), or with ``base_lr`` given the schedule's
    multiplier ``lr_t / base_lr`` (Loshchilov & Hutter's Algorithm 2: the decay is decoupled
    from the rate too, so ``wd`` is the shrink per step at the schedule's start).
    """

    def __init__(self, params: Sequence[nn.Parameter], coef: float,
                 optimizer: torch.optim.Optimizer, base_lr: float | None = None) -> None:
        self.params = list(params)
        self.coef = coef
        self.optimizer = optimizer
        self.base_lr = base_lr

    @torch.no_grad()
    def after_backward(self, state: object) -> None:
        """w ← w·(1 − s·wd), with the current (scheduled) learning rate; nothing on a batch
        whose optimizer step is skipped (``state.skip_update``), since decay is part of it."""
        if getattr(state, "skip_update", False):
            return
        lr = self.optimizer.param_groups[0]["lr"]
        scale = lr if self.base_lr is None else lr / self.base_lr
        for p in self.params:
            p.mul_(1.0 - scale * self.coef)
