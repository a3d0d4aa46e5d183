"""GradientFlowMonitor in real training loops: every=N, gradient accumulation, the cheap mode,
mixed precision with a GradScaler (unscaled gradients, no double unscaling, inf/NaN steps
skipped), and the on_measure hook."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils import prune

from sparseflow.gradflow import GradientFlowMonitor, gradient_flow
from sparseflow.gradflow.monitor import CHEAP_MEASURES

SCALE = 2.0**10


def _model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(12, 32), nn.ReLU(), nn.Linear(32, 16), nn.ReLU(),
                         nn.Linear(16, 4))  # fmt: skip


def _mask(model: nn.Module) -> dict[str, Tensor]:
    gen = torch.Generator().manual_seed(7)
    return {n: torch.rand(p.shape, generator=gen) < 0.4
            for n, p in model.named_parameters() if n.endswith("weight")}  # fmt: skip


def _batch(seed: int, n: int = 32) -> tuple[Tensor, Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(n, 12, generator=gen), torch.randint(0, 4, (n,), generator=gen)


def _backward(model: nn.Module, seed: int) -> None:
    x, y = _batch(seed)
    model.zero_grad()
    F.cross_entropy(model(x), y).backward()


def _grads(model: nn.Module, names: list[str]) -> dict[str, Tensor]:
    return {n: model.get_parameter(n).grad.clone() for n in names}


def test_every_n_measures_only_every_nth_call_and_skips_without_reading() -> None:
    model = _model()
    mask = _mask(model)
    mon = GradientFlowMonitor(model, mask=mask, every=3)
    measured = {}
    for call in range(8):
        if call % 3:
            model.zero_grad(set_to_none=True)  # no .grad at all: a due call would raise
            assert mon.step() is None
            continue
        _backward(model, call)
        measured[call] = gradient_flow(_grads(model, list(mask)), mask)["egf2"]
        assert mon.step()["egf2"] == pytest.approx(measured[call], rel=1e-12)
    assert [r["step"] for r in mon.history] == [0, 3, 6]
    with pytest.raises(ValueError, match="every must be a positive integer"):
        GradientFlowMonitor(model, every=0)


def test_accumulated_micro_batches_equal_one_big_batch() -> None:
    k = 4
    model = _model()
    mask = _mask(model)
    x, y = _batch(1, n=64)
    model.zero_grad()
    F.cross_entropy(model(x), y).backward()
    big = GradientFlowMonitor(model, mask=mask).step()

    mon = GradientFlowMonitor(model, mask=mask, accumulation_steps=k)
    model.zero_grad()
    outs = []
    for xs, ys in zip(x.chunk(k), y.chunk(k), strict=True):
        (F.cross_entropy(model(xs), ys) / k).backward()  # the usual accumulation recipe
        outs.append(mon.step())
    assert outs[:3] == [None, None, None]
    for key in ("gf1", "gf2", "egf1", "egf2", "egf2_per_weight"):
        assert outs[3][key] == pytest.approx(big[key], rel=1e-5), key
    assert outs[3]["step"] == 0 and len(mon.history) == 1


def test_cheap_mode_matches_the_full_measures() -> None:
    model = _model()
    prune.l1_unstructured(model[4], "weight", amount=0.5)  # a prune mask beside given ones
    mask = {k: v for k, v in _mask(model).items() if not k.startswith("4.")}
    full = GradientFlowMonitor(model, mask=mask)
    cheap = GradientFlowMonitor(model, mask=mask, measures="cheap")
    assert cheap.keys == CHEAP_MEASURES
    for seed in range(3):
        _backward(model, seed)
        full.step()
        assert cheap.step() is None  # values stay on the device until read
    assert len(cheap.history) == 3
    for f, c in zip(full.history, cheap.history, strict=True):
        assert set(c) == {"step", *CHEAP_MEASURES}
        for key in CHEAP_MEASURES:
            assert c[key] == pytest.approx(f[key], rel=1e-5), key
    assert cheap.average("egf2") == pytest.approx(full.average("egf2"), rel=1e-5)
    with pytest.raises(ValueError, match="unknown measure 'egf1'"):
        cheap.average("egf1")
    with pytest.raises(ValueError, match="measures must be one of"):
        GradientFlowMonitor(model, measures="fast")


def _amp_backward(model: nn.Module, scaler: torch.amp.GradScaler, dtype: torch.dtype) -> None:
    x, y = _batch(3)
    model.zero_grad()
    with torch.autocast("cpu", dtype=dtype):
        loss = F.cross_entropy(model(x), y)
    scaler.scale(loss).backward()


def _fp32_reference(model: nn.Module, mask: dict[str, Tensor]) -> dict:
    _backward(model, 3)
    return gradient_flow(_grads(model, list(mask)), mask)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_grad_scaler_measures_unscaled_gradients(dtype: torch.dtype) -> None:
    model = _model()
    mask = _mask(model)
    reference = _fp32_reference(model, mask)
    scaler = torch.amp.GradScaler("cpu", init_scale=SCALE)
    mon = GradientFlowMonitor(model, mask=mask, scaler=scaler)
    _amp_backward(model, scaler, dtype)
    scaled = _grads(model, list(mask))
    exact = gradient_flow({n: g / SCALE for n, g in scaled.items()}, mask)
    out = mon.step()
    for key in ("gf1", "gf2", "gf2_masked", "egf1", "egf2", "egf2_per_weight"):
        assert out[key] == pytest.approx(exact[key], rel=1e-9), key
        # Same weights in fp32: low-precision matmuls differ by ~1e-3 (fp16) / ~1e-2 (bf16).
        assert out[key] == pytest.approx(reference[key], rel=5e-2), key
        assert out[key] < reference[key] * 2  # not the scaled value (SCALE times larger)
    norm2 = out["per_layer"]["2.weight"]["norm2"]
    assert norm2 == pytest.approx(exact["per_layer"]["2.weight"]["norm2"], rel=1e-9)
    assert torch.equal(model[2].weight.grad, scaled["2.weight"])  # .grad untouched


def test_after_unscale_the_monitor_does_not_divide_again() -> None:
    model = _model()
    mask = _mask(model)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    scaler = torch.amp.GradScaler("cpu", init_scale=SCALE)
    mon = GradientFlowMonitor(model, mask=mask)
    _amp_backward(model, scaler, torch.float16)
    before = mon.step(scaler=scaler)["egf2"]
    scaler.unscale_(opt)  # e.g. to clip gradients: .grad is now unscaled in place
    after = mon.step(scaler=scaler)["egf2"]
    assert after == pytest.approx(before, rel=1e-6)
    scaler.step(opt)
    scaler.update()


@pytest.mark.parametrize("measures", ["all", "cheap"])
def test_inf_gradients_under_a_scaler_are_skipped(measures: str) -> None:
    model = _model()
    scaler = torch.amp.GradScaler("cpu", init_scale=SCALE)
    mon = GradientFlowMonitor(model, scaler=scaler, measures=measures)
    for call in range(3):
        _amp_backward(model, scaler, torch.float16)
        if call == 1:
            model[2].weight.grad[0, 0] = math.inf  # an overflow, as the scaler would see it
        mon.step()
    assert [r["step"] for r in mon.history] == [0, 2]
    assert mon.skipped == [1]
    assert all(math.isfinite(r["egf2"]) for r in mon.history)


def test_cheap_mode_with_a_scaler_is_unscaled() -> None:
    model = _model()
    mask = _mask(model)
    scaler = torch.amp.GradScaler("cpu", init_scale=SCALE)
    full = GradientFlowMonitor(model, mask=mask, scaler=scaler)
    cheap = GradientFlowMonitor(model, mask=mask, scaler=scaler, measures="cheap")
    _amp_backward(model, scaler, torch.float16)
    full.step()
    cheap.step()
    scaler.update(new_scale=2.0)  # changes the scale in place: the record must not move
    assert cheap.latest["egf2"] == pytest.approx(full.latest["egf2"], rel=1e-5)


def test_on_measure_gets_flat_scalars_and_the_step() -> None:
    model = _model()
    mask = _mask(model)
    calls: list[tuple[dict, int]] = []
    mon = GradientFlowMonitor(
        model, mask=mask, every=2, on_measure=lambda d, s: calls.append((d, s))
    )
    expected = []
    for seed in range(4):
        _backward(model, seed)
        mon.step()
        expected.append((model[0].weight.grad * mask["0.weight"]).double().norm().item())
    assert [s for _, s in calls] == [0, 2]
    scalars = calls[1][0]
    assert scalars["gradflow/egf2"] == mon.latest["egf2"]
    assert scalars["gradflow_layer/0.weight/norm2"] == pytest.approx(expected[2], rel=1e-9)
    cheap_calls: list[dict] = []
    cheap = GradientFlowMonitor(
        model, measures="cheap", on_measure=lambda d, s: cheap_calls.append(d)
    )
    cheap.step()
    assert set(cheap_calls[0]) >= {"gradflow/egf2", "gradflow_layer/4.weight/norm2"}


def test_every_counts_optimizer_steps_under_accumulation() -> None:
    model = _model()
    mon = GradientFlowMonitor(model, accumulation_steps=2, every=3)
    due = []
    for call in range(14):
        _backward(model, call)
        due.append(mon.step() is not None)
    # Optimizer steps end at calls 1, 3, 5, ...; every 3rd of them (0, 3, 6) measures.
    assert [i for i, d in enumerate(due) if d] == [1, 7, 13]
    assert [r["step"] for r in mon.history] == [0, 3, 6]


def test_a_disabled_scaler_changes_nothing() -> None:
    model = _model()
    scaler = torch.amp.GradScaler("cpu", enabled=False)
    _backward(model, 0)
    plain = GradientFlowMonitor(model).step()
    assert GradientFlowMonitor(model, scaler=scaler).step()["egf2"] == plain["egf2"]
    model[0].weight.grad[0, 0] = math.nan
    assert math.isnan(GradientFlowMonitor(model, scaler=scaler).step()["gf2"])  # not skipped


def test_cheap_mode_follows_a_mask_changed_in_place() -> None:
    model = _model()
    mask = _mask(model)
    cheap = GradientFlowMonitor(model, mask=mask, measures="cheap")
    _backward(model, 0)
    cheap.step()
    mask["0.weight"][:] = ~mask["0.weight"]  # a dynamic-sparsity update, in place
    cheap.step()
    expected = gradient_flow(_grads(model, list(mask)), mask)["egf2"]
    assert cheap.history[1]["egf2"] == pytest.approx(expected, rel=1e-5)
    assert cheap.history[1]["egf2"] != pytest.approx(cheap.history[0]["egf2"], rel=1e-3)
