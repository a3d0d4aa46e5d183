"""Learning-rate schedules: hand-computed values, warmup, and the hook setting the lr."""

from __future__ import annotations

import math

import pytest
import torch

import sparseflow  # noqa: F401
from sparseflow.config import ScheduleConfig
from sparseflow.optim import lr_factor
from sparseflow.train import LRSchedule, TrainState


def test_constant() -> None:
    cfg = ScheduleConfig()
    assert [lr_factor(s, 10, 5, cfg) for s in (0, 17, 49)] == [1.0, 1.0, 1.0]


def test_step_decays_every_step_size_epochs() -> None:
    cfg = ScheduleConfig(name="step", step_size=2, gamma=0.5)
    # 10 steps per epoch: epochs [0,2) → 1, [2,4) → 0.5, [4,6) → 0.25
    assert lr_factor(19, 10, 6, cfg) == 1.0
    assert lr_factor(20, 10, 6, cfg) == 0.5
    assert lr_factor(45, 10, 6, cfg) == 0.25


def test_cosine_endpoints_and_midpoint() -> None:
    cfg = ScheduleConfig(name="cosine", min_factor=0.1)
    assert lr_factor(0, 10, 4, cfg) == pytest.approx(1.0)
    assert lr_factor(20, 10, 4, cfg) == pytest.approx(0.1 + 0.9 * 0.5)  # halfway
    assert lr_factor(40, 10, 4, cfg) == pytest.approx(0.1)
    t = 13 / 40
    assert lr_factor(13, 10, 4, cfg) == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * t)))


def test_linear_warmup_composes() -> None:
    cfg = ScheduleConfig(name="cosine", warmup_epochs=2)
    # 5 steps per epoch → 10 warmup steps; step s uses (s + 1) / 10 of the schedule's factor.
    assert lr_factor(0, 5, 10, cfg) == pytest.approx(0.1)
    assert lr_factor(4, 5, 10, cfg) == pytest.approx(0.5)
    assert lr_factor(9, 5, 10, cfg) == pytest.approx(1.0)  # cosine is still 1 until warmup ends
    assert lr_factor(30, 5, 10, cfg) == pytest.approx(0.5 * (1 + math.cos(math.pi * 4 / 8)))
    const = ScheduleConfig(warmup_epochs=1)
    assert [lr_factor(s, 4, 3, const) for s in range(6)] == [0.25, 0.5, 0.75, 1.0, 1.0, 1.0]


def test_hook_sets_lr_of_every_group() -> None:
    p1, p2 = torch.nn.Parameter(torch.zeros(1)), torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([{"params": [p1]}, {"params": [p2]}], lr=1.0)
    state = TrainState(model=torch.nn.Linear(1, 1), optimizer=opt, generators={}, epochs=4,
                       steps_per_epoch=10, step=20)
    LRSchedule(0.2, ScheduleConfig(name="step", step_size=1, gamma=0.1)).before_step(state)
    assert [g["lr"] for g in opt.param_groups] == pytest.approx([0.2 * 0.01, 0.2 * 0.01])
