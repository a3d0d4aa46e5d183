"""GradientFlowMonitor: reads .grad, records history, validates masks, optional TensorBoard."""

from __future__ import annotations

import importlib.util
import math
import sys

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

import sparseflow.gradflow.monitor as monitor_module
from sparseflow.gradflow import (
    MEASURES,
    GradientFlowMonitor,
    TensorBoardUnavailableError,
    gradient_flow,
)
from sparseflow.sparsity.mask import Mask


def _setup() -> tuple[nn.Module, dict[str, Tensor]]:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 12), nn.BatchNorm1d(12), nn.ReLU(), nn.Linear(12, 3))
    gen = torch.Generator().manual_seed(1)
    mask = {"0.weight": torch.rand(12, 5, generator=gen) < 0.5,
            "3.weight": torch.rand(3, 12, generator=gen) < 0.5}  # fmt: skip
    return model, mask


def _backward(model: nn.Module, seed: int) -> None:
    gen = torch.Generator().manual_seed(seed)
    x, y = torch.randn(16, 5, generator=gen), torch.randint(0, 3, (16,), generator=gen)
    model.zero_grad()
    F.cross_entropy(model(x), y).backward()


def test_step_measures_current_grads_and_records_history() -> None:
    model, mask = _setup()
    mon = GradientFlowMonitor(model, mask=Mask(mask))
    assert mon.latest is None
    results = []
    for seed in range(3):
        _backward(model, seed)
        grads = {n: model.get_parameter(n).grad.clone() for n in mask}
        out = mon.step() if seed != 1 else mon()  # __call__ is step
        expected = gradient_flow(grads, mask)
        assert {k: out[k] for k in MEASURES} == {k: expected[k] for k in MEASURES}
        assert out["per_layer"] == expected["per_layer"] and out["step"] == seed
        # Reading changed nothing.
        assert all(torch.equal(model.get_parameter(n).grad, g) for n, g in grads.items())
        results.append(out)
    assert [h["step"] for h in mon.history] == [0, 1, 2]
    assert set(mon.history[0]) == {"step", *MEASURES}
    assert mon.latest == mon.history[-1]
    assert mon.average("egf2") == pytest.approx(sum(r["egf2"] for r in results) / 3)
    assert len({r["egf2"] for r in results}) == 3  # different batches, different values
    mon.step(step=100)
    assert mon.latest["step"] == 100


def test_dense_monitor_and_include_all() -> None:
    model, _ = _setup()
    _backward(model, 0)
    dense = GradientFlowMonitor(model).step()
    assert dense["gf2_masked"] == dense["gf2"] and len(dense["per_layer"]) == 2
    everything = GradientFlowMonitor(model, include_all=True).step()
    assert list(everything["per_layer"]) == [n for n, _ in model.named_parameters()]
    assert everything["gf2"] > dense["gf2"]  # biases and BN parameters add gradient


def test_missing_grad_names_the_layer() -> None:
    model, mask = _setup()
    mon = GradientFlowMonitor(model, mask=mask)
    with pytest.raises(ValueError, match=r"0\.weight"):
        mon.step()  # before any backward
    assert mon.history == []


def test_frozen_layer_is_left_out() -> None:
    model, mask = _setup()
    model[0].requires_grad_(False)
    _backward(model, 0)
    out = GradientFlowMonitor(model, mask=mask).step()
    assert list(out["per_layer"]) == ["3.weight"]


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ({"9.weight": torch.ones(3, 3, dtype=torch.bool)}, "not a parameter"),
        ({"0.weight": torch.ones(5, 12, dtype=torch.bool)}, "shape"),
        ({"0.weight": torch.ones(12, 5)}, "bool tensor"),
    ],
)
def test_bad_mask_rejected_at_construction(bad: dict, message: str) -> None:
    model, _ = _setup()
    with pytest.raises(ValueError, match=message):
        GradientFlowMonitor(model, mask=bad)


def test_average_errors() -> None:
    model, _ = _setup()
    mon = GradientFlowMonitor(model)
    with pytest.raises(ValueError, match="no step"):
        mon.average("egf1")
    with pytest.raises(ValueError, match="unknown measure"):
        mon.average("egf3")


def test_log_dir_without_tensorboard_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    model, _ = _setup()
    monkeypatch.setitem(sys.modules, "tensorboard", None)  # makes `import tensorboard` fail
    with pytest.raises(TensorBoardUnavailableError, match="pip install tensorboard") as info:
        GradientFlowMonitor(model, log_dir="unused")
    assert isinstance(info.value, ImportError)
    GradientFlowMonitor(model)  # no log_dir: no tensorboard needed


class _FakeWriter:
    def __init__(self) -> None:
        self.scalars: list[tuple[str, float, int]] = []
        self.closed = False

    def add_scalar(self, tag: str, value: float, step: int) -> None:
        self.scalars.append((tag, value, step))

    def close(self) -> None:
        self.closed = True


def test_scalars_go_to_the_writer(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = _FakeWriter()
    monkeypatch.setattr(monitor_module, "_make_writer", lambda log_dir: fake)
    model, mask = _setup()
    with GradientFlowMonitor(model, mask=mask, log_dir="logs") as mon:
        for seed in range(2):
            _backward(model, seed)
            mon.step()
    assert fake.closed
    assert len(fake.scalars) == 2 * (len(MEASURES) + 2 * len(mask))  # + norm1, norm2 per layer
    assert ("gradflow/egf2", mon.history[1]["egf2"], 1) in fake.scalars
    per_layer = {tag: v for tag, v, step in fake.scalars if step == 1 and "layer/3." in tag}
    assert set(per_layer) == {"gradflow_layer/3.weight/norm1", "gradflow_layer/3.weight/norm2"}


@pytest.mark.skipif(importlib.util.find_spec("tensorboard") is None, reason="needs tensorboard")
def test_real_tensorboard_writes_event_files(tmp_path) -> None:  # noqa: ANN001
    model, mask = _setup()
    mon = GradientFlowMonitor(model, mask=mask, log_dir=tmp_path)
    _backward(model, 0)
    assert math.isfinite(mon.step()["egf1"])
    mon.close()
    assert any(p.name.startswith("events.out.tfevents") for p in tmp_path.iterdir())
