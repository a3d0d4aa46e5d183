"""The gradient-flow probe of a training run (a hook).

When, for a run of fixed length: at ``points`` evenly spaced epochs from 0 (before the first
update) to the last, ``round(i · epochs / (points − 1))`` for i = 0 … points − 1, duplicates
removed (:func:`probe_epochs`).

With early stopping the last epoch is unknown in advance, and points spread over the epoch cap
would leave a run that stops early with one or two of them. So the probe measures on a grid
that coarsens as training goes on (:func:`on_probe_grid`: every epoch up to ``B = 2·(points −
1)``, then every 2nd up to ``2B``, every 4th up to ``4B``, …; the spacing at epoch e stays
below ``2e/B``), and once more at the epoch the run stops (``batch`` mode: the grid only). The
run's averages use ``points`` of these, evenly spread over the epochs it trained: for each
``i·stop/(points − 1)`` the measured epoch nearest to it (:func:`select_points`). With 11
points a chosen epoch is the nearest whole epoch to its target for runs of up to 20 epochs, and
within 4.3% of the run's length beyond (checked for every stop up to 2,000). The probe runs at
most ``B + (B/2)·log2(cap/B) + 1`` times (67 for a 500-epoch cap with 11 points, against 11 for
a run of fixed length).
Every measured point stays in the series (``gradflow.json``); ``gradflow_epochs`` in the
summary names the ones the averages use.

On what: ``fixed`` — ``probe_size`` training examples drawn once per run with the run's own
probe generator (Evci et al. 2020 use 1,000); ``full`` — the whole training split, forwarded in
chunks of ``eval_batch_size`` (with BatchNorm each chunk uses its own batch statistics);
``batch`` — the training batch of the step: the raw gradient of the run's first step (before any
update) and of the last step of each probe epoch, read before masking and before L2 is added.

How: the plain cross-entropy without regularization terms, in training mode (BatchNorm uses
batch statistics as in training). The fixed and full probes run their own forward/backward
through :func:`sparseflow.gradflow.measure_gradient_flow`, which restores every buffer and
RNG state, so the trained weights are bitwise identical with the probe on or off.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from sparseflow.config.schema import GradFlowConfig
from sparseflow.gradflow import MEASURES, gradient_flow, gradients_of, measure_gradient_flow
from sparseflow.sparsity import Mask
from sparseflow.train.hooks import Hook
from sparseflow.train.state import TrainState


def probe_epochs(epochs: int, points: int) -> list[int]:
    """Epochs after which to measure (0 = before the first update), evenly spread."""
    return sorted({round(i * epochs / (points - 1)) for i in range(points)})


def on_probe_grid(epoch: int, points: int) -> bool:
    """Early stopping: whether ``epoch`` is on the coarsening grid (see the module doc).

    The spacing at ``epoch`` is the smallest power of two ``s`` with ``epoch ≤ B·s``,
    ``B = 2·(points − 1)``; the epoch is on the grid when ``s`` divides it.
    """
    budget = 2 * (points - 1)
    spacing = 1
    while epoch > budget * spacing:
        spacing *= 2
    return epoch % spacing == 0


def is_probe_epoch(epoch: int, epochs: int, points: int, adaptive: bool) -> bool:
    """Whether to measure after ``epoch``: the fixed schedule (:func:`probe_epochs` of the
    ``epochs`` cap), or with early stopping (``adaptive``) the coarsening grid."""
    if adaptive:
        return on_probe_grid(epoch, points)
    return epoch in probe_epochs(epochs, points)


def select_points(measured: list[int], stop: int, points: int) -> list[int]:
    """The measured epochs nearest to ``i·stop/(points − 1)``, i = 0 … points − 1 (ties go to
    the earlier epoch), without duplicates, in order."""
    if not measured:
        return []
    chosen = {min(measured, key=lambda e: (abs(e - i * stop / (points - 1)), e))
              for i in range(points)}
    return sorted(chosen)


class GradFlowProbe(Hook):
    """Measures gradient flow at the probe epochs and keeps the series in ``state.extra``.

    Place it *first* in the hook list: in ``batch`` mode it reads the raw gradient in
    ``after_backward``, before the mask enforcer masks it and before L2 is added.
    """

    name = "gradflow"

    def __init__(self, cfg: GradFlowConfig, mask: Mask | None, epochs: int,
                 probe_x: Tensor | None = None, probe_y: Tensor | None = None,
                 chunk: int | None = None, *, adaptive: bool = False) -> None:
        if cfg.probe_set != "batch" and (probe_x is None or probe_y is None):
            raise ValueError("the fixed/full probe needs probe_x and probe_y")
        self.cfg, self.mask, self.chunk = cfg, mask, chunk
        self.x, self.y = probe_x, probe_y
        self.adaptive, self.cap = adaptive, epochs

    def is_probe_epoch(self, epoch: int) -> bool:
        """Whether to measure after ``epoch`` (see :func:`is_probe_epoch`)."""
        return is_probe_epoch(epoch, self.cap, self.cfg.points, self.adaptive)

    # Series kept in state.extra so checkpoints carry it -------------------------------------
    @staticmethod
    def series(state: TrainState) -> list[dict[str, Any]]:
        """The measurements so far (one dict per probe point)."""
        return state.extra.setdefault("gradflow", [])

    def _record(self, state: TrainState, epoch: int, result: dict[str, Any]) -> None:
        point = {"epoch": epoch, "step": state.step, **{k: result[k] for k in MEASURES},
                 "per_layer": result["per_layer"]}
        self.series(state).append(point)
        state.extra["latest_egf2"] = result["egf2"]

    # Fixed / full probe set ------------------------------------------------------------------
    def _measure(self, state: TrainState, epoch: int) -> None:
        model = state.model
        was_training = model.training
        model.train()
        result = measure_gradient_flow(model, F.cross_entropy, self.x, self.y, self.mask,
                                       include_all=self.cfg.include_all, batch_size=self.chunk)
        model.train(was_training)
        self._record(state, epoch, result)

    def begin(self, state: TrainState) -> None:
        """Point 0: before the first update (skipped when resuming past it)."""
        if self.cfg.probe_set != "batch" and state.epoch == 0 and not self.series(state):
            self._measure(state, 0)

    def end_epoch(self, state: TrainState) -> None:
        """Measure after each probe epoch."""
        if self.cfg.probe_set != "batch" and state.epoch > 0 and self.is_probe_epoch(state.epoch):
            self._measure(state, state.epoch)

    def end(self, state: TrainState) -> None:
        """Early stopping: measure the epoch the run stopped at, unless already measured."""
        if not self.adaptive or self.cfg.probe_set == "batch" or state.epoch == 0:
            return
        if all(p["epoch"] != state.epoch for p in self.series(state)):
            self._measure(state, state.epoch)

    # Current training batch -------------------------------------------------------------------
    def after_backward(self, state: TrainState) -> None:
        """batch mode: the raw gradient of the first step and of each probe epoch's last step."""
        if self.cfg.probe_set != "batch":
            return
        current = state.epoch + 1  # the epoch being trained, 1-based
        last_of_epoch = state.step + 1 == current * state.steps_per_epoch
        if state.step == 0:
            epoch = 0
        elif last_of_epoch and self.is_probe_epoch(current):
            epoch = current
        else:
            return
        grads = {n: g.detach().to(torch.float64) for n, g in
                 gradients_of(state.model, include_all=self.cfg.include_all).items()}
        masks = {n: m for n, m in self.mask.items() if n in grads} if self.mask else None
        self._record(state, epoch, gradient_flow(grads, masks))

    def summarize(self, state: TrainState) -> dict[str, Any]:
        """Run averages of every measure ("average EGF") over the points reached, or, with
        early stopping, over ``points`` of them evenly spread over the epochs trained; a
        measure's non-finite points (a diverged run's) are left out, so it averages up to
        divergence."""
        points = self.series(state)
        if self.adaptive:
            keep = set(select_points([p["epoch"] for p in points], state.epoch, self.cfg.points))
            points = [p for p in points if p["epoch"] in keep]
        out: dict[str, Any] = {"gradflow_points": len(points),
                               "gradflow_epochs": [p["epoch"] for p in points]}
        for key in MEASURES:
            values = [p[key] for p in points if math.isfinite(p[key])]
            out[key] = math.fsum(values) / len(values) if values else math.nan
        return out
