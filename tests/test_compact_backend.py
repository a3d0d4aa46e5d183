"""The compact layout (sparsity.backend: compact): the layer against torch.autograd on the
masked dense product, the optimizer training only the active weights, the dense weight kept in
step as its mirror (outside writes), auto's choice and what it refuses. Whole runs against
masked dense under every optimizer, BatchNorm, dropout, decay and the probes, and a run resumed
in parts: tests/test_sparse_backend.py."""

from __future__ import annotations

from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

import sparseflow  # noqa: F401
from sparseflow.config.schema import ExperimentConfig
from sparseflow.sparsity import Mask, MaskEnforcer
from sparseflow.sparsity.backend import Layout, install_backend, sparse_layers
from sparseflow.sparsity.compact import CompactLinearFunction
from sparseflow.train.build import build_run
from sparseflow.train.loop import fit

from tests.conftest import tiny
from tests.test_cli import _run as run_cli


def _layer_case(dtype: torch.dtype) -> tuple[Tensor, Tensor, Tensor, Layout, Tensor]:
    g = torch.Generator().manual_seed(0)
    active = torch.rand(7, 5, generator=g) < 0.4
    w = torch.randn(7, 5, generator=g, dtype=dtype) * active
    x = torch.randn(4, 5, generator=g, dtype=dtype)
    b = torch.randn(7, generator=g, dtype=dtype)
    return w, x, b, Layout.from_mask(active, torch.device("cpu")), active


def test_function_matches_autograd_on_the_masked_dense_product() -> None:
    w, x, b, layout, active = _layer_case(torch.float32)
    values = w.reshape(-1)[layout.flat].clone().requires_grad_()
    xa, xb = x.clone().requires_grad_(), x.clone().requires_grad_()
    ba, bb = b.clone().requires_grad_(), b.clone().requires_grad_()
    wd = w.clone().requires_grad_()
    gy = torch.randn(4, 7, generator=torch.Generator().manual_seed(1))
    y = CompactLinearFunction.apply(xa, values, ba, layout)
    y_ref = F.linear(xb, wd * active, bb)  # the oracle: autograd through the mask
    torch.testing.assert_close(y, y_ref)
    (y * gy).sum().backward()
    (y_ref * gy).sum().backward()
    torch.testing.assert_close(xa.grad, xb.grad)
    torch.testing.assert_close(ba.grad, bb.grad)
    torch.testing.assert_close(values.grad, wd.grad.reshape(-1)[layout.flat])


def test_function_gradcheck_float64() -> None:
    w, x, b, layout, _ = _layer_case(torch.float64)
    values = w.reshape(-1)[layout.flat].clone().requires_grad_()
    assert torch.autograd.gradcheck(
        lambda x_, v_, b_: CompactLinearFunction.apply(x_, v_, b_, layout),
        (x.requires_grad_(), values, b.requires_grad_()))


def test_perm_t_orders_the_values_as_the_transpose() -> None:
    w, _, _, layout, _ = _layer_case(torch.float32)
    values = w.reshape(-1)[layout.flat]
    torch.testing.assert_close(layout.csr_t(values[layout.perm_t]).to_dense(), w.t())


def _train(backend: str, **over: Any) -> Any:
    cfg = ExperimentConfig.model_validate(tiny(
        sparsity={"density": 0.3, "backend": backend, **over.pop("sparsity", {})},
        train={"epochs": 1}, **over))
    built = build_run(cfg)
    fit(built.state, built.data, built.hooks, batch_size=cfg.train.batch_size,
        eval_batch_size=cfg.train.eval_batch_size)
    return built


@pytest.mark.parametrize("opt", ["momentum", "adam"])
def test_the_optimizer_trains_only_the_active_weights(opt: str) -> None:
    built = _train("compact", optim={"name": opt, "lr": 0.01})
    layers = sparse_layers(built.state.model)
    assert set(layers) == set(built.mask)
    trained = {id(p) for group in built.state.optimizer.param_groups for p in group["params"]}
    for name, mod in layers.items():
        compact = mod._sparse.compact
        nnz = int(built.mask[name].sum())
        assert id(mod.weight) not in trained and id(compact.values) in trained
        state = built.state.optimizer.state[compact.values]
        assert state and all(t.numel() in (1, nnz) for t in state.values()
                             if isinstance(t, Tensor))
        # the dense weight is the mirror: the values at the active positions, 0 elsewhere
        expected = torch.zeros_like(mod.weight).view(-1)
        expected[compact.layout.flat] = compact.values.detach()
        assert torch.equal(mod.weight.detach().view(-1), expected)
        assert mod.weight.grad is None  # no dense gradient was taken in the training steps


def test_an_outside_write_to_the_weight_is_taken_and_remasked() -> None:
    built = _train("compact")
    name, mod = next(iter(sparse_layers(built.state.model).items()))
    with torch.no_grad():
        mod.weight.fill_(2.0)  # e.g. load_state_dict between steps, pruned entries included
    x = torch.randn(3, mod.in_features)
    mod(x)  # the next forward brings the two into step
    active = built.mask[name]
    assert torch.all(mod.weight[~active] == 0) and torch.all(mod.weight[active] == 2.0)
    assert torch.all(mod._sparse.compact.values == 2.0)
    with torch.no_grad():
        mod.weight.mul_(0.5)
        mod._sparse.compact.values.mul_(3.0)
    with pytest.raises(RuntimeError, match="both the dense weight"):
        mod(x)


def test_a_mask_whose_positions_change_is_refused() -> None:
    model = nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 3))
    g = torch.Generator().manual_seed(0)
    mask = Mask({n: torch.rand(p.shape, generator=g) < 0.5
                 for n, p in model.named_parameters() if n.endswith("weight")})
    install_backend(model, mask, "compact", torch.device("cpu"))
    enforcer = MaskEnforcer(model, mask)
    enforcer.apply_to_weights()
    x = torch.randn(2, 6)
    model(x)
    enforcer.set_layer("0.weight", mask["0.weight"].clone())  # same positions: accepted
    model(x)
    enforcer.set_layer("0.weight", ~mask["0.weight"])
    with pytest.raises(RuntimeError, match="changed its active positions"):
        model(x)


def test_dynamic_sparse_training_is_refused_in_one_line(
        capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(ValueError, match="backend compact keeps the active positions fixed"):
        ExperimentConfig.model_validate(tiny(
            sparsity={"density": 0.3, "backend": "compact", "masker": "rigl"}))
    code, _, err = run_cli(["train", "--dry-run", "--set", "sparsity.density=0.3",
                            "--set", "sparsity.masker=set",
                            "--set", "sparsity.backend=compact"], capsys)
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error: "), err
    assert "sparsity.backend: sparse" in lines[0]


@pytest.mark.parametrize("masker, compact", [("random", True), ("rigl", False)])
def test_auto_puts_static_masks_in_the_compact_layout(masker: str, compact: bool) -> None:
    cfg = ExperimentConfig.model_validate(tiny(
        model={"width": 300}, sparsity={"density": 0.02, "backend": "auto", "masker": masker}))
    built = build_run(cfg)
    layers = sparse_layers(built.state.model)
    assert list(layers) == ["hidden.1.linear.weight"]  # the only layer auto's rule picks
    assert (layers["hidden.1.linear.weight"]._sparse.compact is not None) == compact
