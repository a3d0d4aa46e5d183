"""Learning-rate schedules as pure functions of the (fractional) epoch.

A schedule maps ``(epoch, total_epochs, cfg) → factor`` with factor · base lr = the lr used.
Linear warmup (``warmup_epochs``) composes with every schedule: the factor is scaled by
``min(1, epoch / warmup_epochs)``. The trainer sets the lr before every step, so schedules are
smooth within an epoch and resume exactly (the lr is a function of the step count alone).
"""

from __future__ import annotations

import math

from sparseflow.config.schema import ScheduleConfig
from sparseflow.registry import SCHEDULES


@SCHEDULES.register("constant")
def constant(epoch: float, total: int, cfg: ScheduleConfig) -> float:
    """Constant learning rate."""
    return 1.0


@SCHEDULES.register("step")
def step(epoch: float, total: int, cfg: ScheduleConfig) -> float:
    """Multiply by gamma every step_size epochs."""
    return cfg.gamma ** math.floor(epoch / cfg.step_size)


@SCHEDULES.register("cosine")
def cosine(epoch: float, total: int, cfg: ScheduleConfig) -> float:
    """Cosine decay from 1 to min_factor over the training epochs (after warmup)."""
    span = max(total - cfg.warmup_epochs, 1e-12)
    t = min(max(epoch - cfg.warmup_epochs, 0.0) / span, 1.0)
    return cfg.min_factor + (1.0 - cfg.min_factor) * 0.5 * (1.0 + math.cos(math.pi * t))


def lr_factor(step: int, steps_per_epoch: int, total: int, cfg: ScheduleConfig) -> float:
    """Factor of the base lr for optimizer step ``step`` (0-based) of a ``total``-epoch run.

    The schedule sees the fractional epoch ``step / steps_per_epoch``; warmup ramps linearly
    so that step s uses ``(s + 1) / warmup_steps`` (the first step is not wasted at lr 0).
    """
    factor = SCHEDULES.get(cfg.name)(step / steps_per_epoch, total, cfg)
    if cfg.warmup_epochs > 0:
        factor *= min(1.0, (step + 1) / (cfg.warmup_epochs * steps_per_epoch))
    return factor
