"""``regularization.decay_scaling``: decoupled decay scaled by the rate (torch) or the schedule."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

import sparseflow  # noqa: F401
from sparseflow.config import build_config
from sparseflow.config.identity import config_id
from sparseflow.optim import DecoupledWeightDecay
from sparseflow.train import run_experiment
from sparseflow.train.vectorized import run_group

from tests.conftest import tiny
from tests.test_vectorized import _max_dw


@pytest.mark.parametrize(("scaling", "factor"), [("lr", 1 - 0.5 * 0.1), ("schedule", 1 - 0.1)])
def test_the_shrink_per_step_of_each_scaling(scaling: str, factor: float) -> None:
    w = nn.Parameter(torch.tensor([2.0, -4.0]))
    opt = torch.optim.SGD([w], lr=0.5)
    base = 0.5 if scaling == "schedule" else None
    DecoupledWeightDecay([w], 0.1, opt, base_lr=base).after_backward(None)
    assert torch.allclose(w, torch.tensor([2.0, -4.0]) * factor)


def test_the_default_keeps_run_ids_and_schedule_changes_them() -> None:
    plain = build_config(tiny(regularization={"weight_decay": 0.01}))
    same = build_config(tiny(regularization={"weight_decay": 0.01, "decay_scaling": "lr"}))
    other = build_config(tiny(regularization={"weight_decay": 0.01,
                                              "decay_scaling": "schedule"}))
    assert config_id(plain) == config_id(same) != config_id(other)


def test_a_vectorized_group_decays_as_runs_alone(tmp_path: Path) -> None:
    reg = {"weight_decay": 0.02, "decay_scaling": "schedule"}
    optim = {"name": "momentum", "lr": 0.05, "schedule": {"name": "cosine"}}
    cfgs = [build_config({**tiny(optim=optim, train={"epochs": 2}, regularization=reg),
                          "seed": s})
            for s in range(2)]
    cfgs[1] = cfgs[1].model_copy(update={"optim": cfgs[1].optim.model_copy(
        update={"lr": 0.02})})
    for cfg, g in zip(cfgs, run_group(cfgs, tmp_path / "g"), strict=True):
        alone = run_experiment(cfg, tmp_path / f"alone-{cfg.seed}")
        assert g.summary["vectorized_group"] == 2
        assert _max_dw(g.run_dir, alone.run_dir) <= 1e-4
