"""The masking fast path (``zero_pruned_``: multiply by a 0/1 mask, the exact ``masked_fill_``
pass only where the product is not finite) gives what ``masked_fill_`` gives: bitwise for finite
tensors (compared within this process), zeros at pruned positions holding inf or NaN, and the
active positions untouched, for every optimizer with BatchNorm, coupled L2 and weight decay."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

import sparseflow  # noqa: F401
from sparseflow.registry import OPTIMIZERS
from sparseflow.sparsity import MaskEnforcer, draw_mask, enforce, layer_counts, prunable_parameters
from sparseflow.sparsity.enforce import keep_and_pruned, zero_pruned_
from sparseflow.train.hooks import call

from tests.test_enforcement import _setup


def _exact(t: torch.Tensor, keep: torch.Tensor, pruned: torch.Tensor) -> torch.Tensor:
    """The reference: the bool masked_fill_ the enforcer used before."""
    return t.masked_fill_(pruned, 0.0)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("shape", [(7,), (16, 33), (3, 16, 33)])
def test_finite_tensors_equal_masked_fill(dtype: torch.dtype, shape: tuple[int, ...]) -> None:
    g = torch.Generator().manual_seed(0)
    t = torch.randn(*shape, generator=g, dtype=dtype) * 100
    active = torch.rand(*shape, generator=g) < 0.3
    keep, pruned = keep_and_pruned(active, t)
    assert keep.dtype == dtype and pruned.dtype == torch.bool
    ours, ref = zero_pruned_(t.clone(), keep, pruned), t.clone().masked_fill_(pruned, 0.0)
    assert torch.equal(ours, ref)
    assert torch.all(ours[pruned] == 0)
    # active values are the very same bits (x·1 = x)
    assert torch.equal(ours[active].view(torch.int8 if dtype == torch.float32 else torch.int16),
                       t[active].view(torch.int8 if dtype == torch.float32 else torch.int16))


def test_pruned_inf_and_nan_become_zero_active_ones_stay() -> None:
    t = torch.tensor([math.inf, -math.inf, math.nan, 1.5, math.inf, math.nan, -2.0, 0.0])
    active = torch.tensor([False, False, False, False, True, True, True, False])
    out = zero_pruned_(t.clone(), *keep_and_pruned(active, t))
    assert torch.equal(out[~active], torch.zeros(5))  # no NaN from 0·inf left behind
    assert out[4] == math.inf and math.isnan(out[5]) and out[6] == -2.0


def test_an_overflowing_sum_of_finite_values_still_masks_exactly() -> None:
    t = torch.full((4,), 3e38)  # the sum overflows to inf: the exact pass runs, same result
    active = torch.tensor([True, True, False, True])
    out = zero_pruned_(t.clone(), *keep_and_pruned(active, t))
    assert torch.equal(out, torch.tensor([3e38, 3e38, 0.0, 3e38]))


def _train(opt_name: str, l2: float, wd: float, inject: bool = False) -> tuple[list, dict]:
    """Five steps of a BN model under the enforcer; returns every step's weights and the mask.
    ``inject``: an inf gradient at one pruned position of every masked layer at step 2."""
    model, mask, opt, enf, hooks = _setup(opt_name, l2, wd)
    live = prunable_parameters(model)
    seen = []
    data = torch.Generator().manual_seed(1)
    for step in range(5):
        x, y = torch.randn(32, 6, generator=data), torch.randint(0, 3, (32,), generator=data)
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        if inject and step == 2:
            for n in mask:
                where = (~mask[n]).nonzero()[0]
                live[n].grad[tuple(where)] = math.inf
        call(hooks, "after_backward", None)
        opt.step()
        call(hooks, "after_step", None)
        seen.append({n: p.detach().clone() for n, p in model.named_parameters()})
    return seen, dict(mask)


@pytest.mark.parametrize("opt_name", OPTIMIZERS.names())
@pytest.mark.parametrize("l2,wd", [(0.0, 0.0), (0.01, 0.05)])
def test_training_equals_the_masked_fill_path(opt_name: str, l2: float, wd: float,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    fast, mask = _train(opt_name, l2, wd)
    monkeypatch.setattr(enforce, "zero_pruned_", _exact)
    ref, _ = _train(opt_name, l2, wd)
    for a, b in zip(fast, ref, strict=True):
        for n in a:
            assert torch.equal(a[n], b[n]), f"{opt_name}: {n} differs from masked_fill_"
            if n in mask:
                assert torch.all(a[n][~mask[n]] == 0)
    assert any(not torch.equal(fast[0][n], fast[-1][n]) for n in mask)  # it did train


@pytest.mark.parametrize("opt_name", ["momentum", "adam", "adamw"])
def test_an_inf_gradient_at_a_pruned_position_leaves_zeros(
        opt_name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    fast, mask = _train(opt_name, 0.01, 0.05, inject=True)
    for weights in fast:
        for n in mask:
            assert torch.all(weights[n][~mask[n]] == 0)
            assert torch.isfinite(weights[n]).all()
    monkeypatch.setattr(enforce, "zero_pruned_", _exact)
    ref, _ = _train(opt_name, 0.01, 0.05, inject=True)
    assert all(torch.equal(a[n], b[n]) for a, b in zip(fast, ref, strict=True) for n in a)


def test_set_layer_updates_both_masks_the_fast_path_uses() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 5))
    params = {n: p.detach() for n, p in prunable_parameters(model).items()}
    mask = draw_mask("random", params, layer_counts(params, 0.5), torch.Generator().manual_seed(0))
    enf = MaskEnforcer(model, mask)
    new = ~mask["0.weight"]
    enf.set_layer("0.weight", new)
    with torch.no_grad():
        model[0].weight.fill_(1.0)
    enf.apply_to_weights()
    assert torch.equal(model[0].weight != 0, new)
