"""Masking semantics: every pruned weight is exactly 0 after every optimizer step, for every
registered optimizer, with coupled L2 and decoupled weight decay; optimizer state at pruned
positions stays 0; the optimizer only sees masked gradients."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import sparseflow  # noqa: F401
from sparseflow.config import OptimConfig
from sparseflow.optim import CoupledL2, DecoupledWeightDecay, build_optimizer, decay_targets
from sparseflow.registry import OPTIMIZERS
from sparseflow.sparsity import MaskEnforcer, draw_mask, layer_counts, prunable_parameters
from sparseflow.train.hooks import call


def _setup(opt_name: str, l2: float, wd: float):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Linear(16, 3))
    params = {n: p.detach() for n, p in prunable_parameters(model).items()}
    mask = draw_mask("random", params, layer_counts(params, 0.3), torch.Generator().manual_seed(0))
    opt = build_optimizer(model.parameters(), OptimConfig(name=opt_name, lr=0.05))
    enf = MaskEnforcer(model, mask)
    enf.apply_to_weights()
    hooks: list[object] = [enf]
    targets = decay_targets(model, include_all=False)
    if l2:
        hooks.append(CoupledL2(targets, l2))
    if wd:
        hooks.append(DecoupledWeightDecay(targets, wd, opt))
    return model, mask, opt, enf, hooks


@pytest.mark.parametrize("opt_name", OPTIMIZERS.names())
@pytest.mark.parametrize("l2,wd", [(0.0, 0.0), (0.01, 0.0), (0.0, 0.05), (0.01, 0.05)])
def test_pruned_weights_and_state_stay_zero(opt_name: str, l2: float, wd: float) -> None:
    model, mask, opt, enf, hooks = _setup(opt_name, l2, wd)
    enf.keep_raw = True
    params = prunable_parameters(model)
    seen_grads: list[dict[str, torch.Tensor]] = []
    for _ in range(5):
        x, y = torch.randn(32, 6), torch.randint(0, 3, (32,))
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        call(hooks, "after_backward", None)
        seen_grads.append({n: params[n].grad.clone() for n in mask})
        opt.step()
        call(hooks, "after_step", None)
        for n in mask:
            assert torch.all(params[n][~mask[n]] == 0), f"{opt_name}: pruned weight moved"
            for key, buf in opt.state[params[n]].items():
                if torch.is_tensor(buf) and buf.shape == params[n].shape:
                    assert torch.all(buf[~mask[n]] == 0), f"{opt_name}: state {key} leaked"
    # The optimizer saw masked gradients; the raw ones were kept for probes and are non-zero
    # at pruned positions (else the test would prove nothing).
    for grads in seen_grads:
        for n in mask:
            assert torch.all(grads[n][~mask[n]] == 0)
    assert any(torch.any(enf.raw_grads[n][~mask[n]] != 0) for n in mask)
    # Active weights did train.
    assert all(torch.any(params[n][mask[n]] != 0) for n in mask)


def test_coupled_l2_is_added_to_the_gradient() -> None:
    w = nn.Parameter(torch.tensor([1.0, -2.0]))
    w.grad = torch.tensor([0.5, 0.5])
    CoupledL2([w], 0.1).after_backward(None)
    assert torch.allclose(w.grad, torch.tensor([0.6, 0.3]))


@pytest.mark.parametrize(("coef", "base_lr"), [(0.2, None), (0.02, 0.1)])
def test_decoupled_decay_matches_torch_adamw(coef: float, base_lr: float | None) -> None:
    # Scaled by the rate, wd is torch's weight_decay; scaled by the schedule only (Loshchilov
    # & Hutter's λ per step), it is torch's AdamW with weight_decay = λ / lr.
    torch.manual_seed(1)
    a = nn.Parameter(torch.randn(5))
    b = nn.Parameter(a.detach().clone())
    ours = build_optimizer([a], OptimConfig(name="adamw", lr=0.1))
    decay = DecoupledWeightDecay([a], coef, ours, base_lr=base_lr)
    ref = torch.optim.AdamW([b], lr=0.1, weight_decay=0.2)
    for _ in range(4):
        g = torch.randn(5)
        a.grad, b.grad = g.clone(), g.clone()
        decay.after_backward(None)
        ours.step()
        ref.step()
    assert torch.allclose(a, b, atol=1e-7)
