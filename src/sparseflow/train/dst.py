"""Wiring dynamic sparse training into a run: the hook and its EGF measurement.

The hook itself (:class:`~sparseflow.sparsity.dst.DynamicSparsity`) lives in ``sparsity``;
the gradient-flow measurement it calls around each update is built here from the run's probe,
since ``sparsity`` sits below ``gradflow`` in the layering.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F

from sparseflow.config.schema import ExperimentConfig
from sparseflow.gradflow import gradient_flow, measure_gradient_flow
from sparseflow.registry import MASKERS
from sparseflow.sparsity import MaskEnforcer
from sparseflow.sparsity.dst import DynamicSparsity
from sparseflow.train.probe import GradFlowProbe


def probe_measure(probe: GradFlowProbe, enforcer: MaskEnforcer,
                  model: torch.nn.Module) -> Callable[[], dict[str, Any]]:
    """EGF with the current mask: on the probe set (fixed/full; its own forward/backward, which
    leaves no trace), or in batch mode on the current batch's raw gradient (kept by the
    enforcer on update steps)."""
    def measure() -> dict[str, Any]:
        mask = enforcer.mask
        if probe.cfg.probe_set == "batch":
            grads = {n: g.to(torch.float64) for n, g in enforcer.raw_grads.items()}
            return gradient_flow(grads, {n: mask[n] for n in grads})
        was_training = model.training
        model.train()
        try:
            return measure_gradient_flow(model, F.cross_entropy, probe.x, probe.y, mask,
                                         include_all=probe.cfg.include_all,
                                         batch_size=probe.chunk)
        finally:
            model.train(was_training)
    return measure


def build_dst_hook(cfg: ExperimentConfig, enforcer: MaskEnforcer,
                   optimizer: torch.optim.Optimizer, model: torch.nn.Module, total_steps: int,
                   probe: GradFlowProbe | None) -> DynamicSparsity:
    """The dynamic-sparsity hook of a run whose masker is dynamic (``set``, ``rigl``)."""
    sp = cfg.sparsity
    measure = None
    if probe is not None and sp.dst.measure:
        measure = probe_measure(probe, enforcer, model)
    meta = MASKERS.meta(sp.masker)
    needs_grad = bool(meta.get("needs_grad", False))
    # Batch-mode EGF reads the raw gradient of the update batch.
    keep = needs_grad or (measure is not None and probe is not None
                          and probe.cfg.probe_set == "batch")
    return DynamicSparsity(enforcer, optimizer, MASKERS.get(sp.masker), sp.dst,
                           total_steps=total_steps, seed=cfg.seed, needs_grad=needs_grad,
                           needs_raw=keep, measure=measure, masker=sp.masker)
