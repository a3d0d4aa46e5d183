"""The sparse execution backends: the same numbers as masked dense (float tolerance, not
bitwise) for the layer, whole runs under every registered optimizer, BatchNorm, dropout and the
gradient-flow probes, on the sparse path and in the compact layout, and a RigL run whose mask
changes (sparse); auto's choice; ids and state_dicts unchanged."""

from __future__ import annotations

from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

import sparseflow  # noqa: F401
from sparseflow.config.identity import config_id
from sparseflow.config.schema import ExperimentConfig
from sparseflow.registry import OPTIMIZERS
from sparseflow.sparsity import Mask, MaskEnforcer
from sparseflow.sparsity.backend import (
    AUTO_MAX_DENSITY,
    Layout,
    SparseLinear,
    SparseLinearFunction,
    choose_layers,
    install_backend,
    sparse_layers,
    uninstall_backend,
)
from sparseflow.studies.grouping import vectorizable
from sparseflow.train.build import build_run
from sparseflow.train.loop import fit

from tests.conftest import tiny

# float32 sums in another order: a few ulps per sum, grown over a few dozen steps.
RTOL, ATOL = 1e-4, 1e-5


def _mask(shape: tuple[int, int], density: float, seed: int) -> Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(shape, generator=g) < density





# The layer ---------------------------------------------------------------------------------
@pytest.mark.parametrize("partial", [False, True])
@pytest.mark.parametrize("bias", [False, True])
def test_function_matches_masked_dense(partial: bool, bias: bool) -> None:
    torch.manual_seed(0)
    active = _mask((30, 20), 0.2, 1)
    w = (torch.randn(30, 20) * active).requires_grad_()
    b = torch.randn(30).requires_grad_() if bias else None
    x = torch.randn(9, 20, requires_grad=True)
    gy = torch.randn(9, 30)
    y = SparseLinearFunction.apply(x, w, b, Layout.from_mask(active, x.device), partial)
    y.backward(gy)
    w2 = w.detach().clone().requires_grad_()
    b2 = b.detach().clone().requires_grad_() if bias else None
    x2 = x.detach().clone().requires_grad_()
    F.linear(x2, w2, b2).backward(gy)
    torch.testing.assert_close(y, F.linear(x2, w2, b2), rtol=RTOL, atol=ATOL)
    torch.testing.assert_close(x.grad, x2.grad, rtol=RTOL, atol=ATOL)
    if bias:
        torch.testing.assert_close(b.grad, b2.grad, rtol=RTOL, atol=ATOL)
    if partial:  # the active positions exactly as dense, the pruned ones 0
        torch.testing.assert_close(w.grad[active], w2.grad[active], rtol=RTOL, atol=ATOL)
        assert torch.all(w.grad[~active] == 0) and torch.any(w2.grad[~active] != 0)
    else:  # the raw gradient, pruned positions too
        torch.testing.assert_close(w.grad, w2.grad, rtol=RTOL, atol=ATOL)


def test_function_gradcheck_float64() -> None:
    # partial: the exact derivative of the sparse function (pruned entries do not enter it)
    active = _mask((6, 5), 0.5, 2)
    w = (torch.randn(6, 5, dtype=torch.float64) * active).requires_grad_()
    b = torch.randn(6, dtype=torch.float64, requires_grad=True)
    x = torch.randn(4, 5, dtype=torch.float64, requires_grad=True)
    lay = Layout.from_mask(active, x.device)
    assert torch.autograd.gradcheck(lambda x, w, b: SparseLinearFunction.apply(x, w, b, lay, True),
                                    (x, w, b))


def _mlp() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(20, 16), nn.ReLU(), nn.Linear(16, 5))


def test_install_keeps_parameters_and_state_dict() -> None:
    a, b = _mlp(), _mlp()
    mask = Mask({"0.weight": _mask((16, 20), 0.3, 3), "2.weight": _mask((5, 16), 0.5, 4)})
    chosen = install_backend(b, mask, "sparse", torch.device("cpu"))
    assert chosen == ["0.weight", "2.weight"] and set(sparse_layers(b)) == set(chosen)
    assert isinstance(b[0], nn.Linear) and type(b[0]) is SparseLinear
    assert list(a.state_dict()) == list(b.state_dict())
    MaskEnforcer(b, mask).apply_to_weights()
    MaskEnforcer(a, mask).apply_to_weights()
    x = torch.randn(3, 7, 20)  # leading dimensions are kept
    torch.testing.assert_close(b(x), a(x), rtol=RTOL, atol=ATOL)
    uninstall_backend(b)
    assert type(b[0]) is nn.Linear and not sparse_layers(b)


def test_layout_follows_a_mask_changed_in_place() -> None:
    a, b = _mlp(), _mlp()
    mask_a = Mask({"0.weight": _mask((16, 20), 0.3, 5)})
    mask_b = Mask(mask_a.to_dict())
    install_backend(b, mask_b, "sparse", torch.device("cpu"))
    ea, eb = MaskEnforcer(a, mask_a), MaskEnforcer(b, mask_b)
    ea.apply_to_weights()
    eb.apply_to_weights()
    x = torch.randn(4, 20)
    b(x)
    before = b[0]._sparse.layout
    new = _mask((16, 20), 0.3, 6)
    for e in (ea, eb):
        e.set_layer("0.weight", new)
        with torch.no_grad():
            e.params["0.weight"].copy_(torch.randn(16, 20) * new)  # the grown weights
    with torch.no_grad():
        b[0].weight.copy_(a[0].weight)
    torch.testing.assert_close(b(x), a(x), rtol=RTOL, atol=ATOL)
    assert b[0]._sparse.layout is not before
    assert b[0]._sparse.layout.flat.numel() == int(new.sum())


def test_partial_grads_only_inside_a_training_step() -> None:
    model = _mlp()
    mask = Mask({"0.weight": _mask((16, 20), 0.3, 7)})
    install_backend(model, mask, "sparse", torch.device("cpu"))
    enf = MaskEnforcer(model, mask)
    enf.apply_to_weights()
    x, y = torch.randn(8, 20), torch.randint(0, 5, (8,))
    pruned = ~mask["0.weight"]

    def raw_grad() -> Tensor:
        model.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()
        return model[0].weight.grad

    assert torch.any(raw_grad()[pruned] != 0)  # outside a step: the raw gradient
    enf.before_step(None)
    assert torch.all(raw_grad()[pruned] == 0)  # the step's backward: active positions only
    enf.keep_raw = True  # someone (RigL, a probe) wants the raw gradient of this step
    assert torch.any(raw_grad()[pruned] != 0)
    enf.keep_raw = False
    enf.after_backward(None)
    assert not enf.in_step and torch.any(raw_grad()[pruned] != 0)


# auto ------------------------------------------------------------------------------------------
def test_auto_picks_sparse_linear_layers_by_density_and_size_on_cpu_only() -> None:
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.Flatten(), nn.Linear(400, 300),
                          nn.Linear(300, 300), nn.Linear(300, 10))
    low, high = AUTO_MAX_DENSITY / 2, min(1.0, AUTO_MAX_DENSITY * 3)
    mask = Mask({"0.weight": _mask((4, 1, 3, 3), 0.01, 8), "2.weight": _mask((300, 400), low, 9),
                 "3.weight": _mask((300, 300), high, 10), "4.weight": _mask((10, 300), low, 11)})
    cpu = torch.device("cpu")
    # the conv never; 3 is too dense; 4 is too small (3,000 weights)
    assert choose_layers(model, mask, "auto", cpu) == ["2.weight"]
    assert choose_layers(model, mask, "sparse", cpu) == ["2.weight", "3.weight", "4.weight"]
    assert choose_layers(model, mask, "masked", cpu) == []
    # CUDA: the crossover was measured on CPU; auto keeps masked dense there.
    assert choose_layers(model, mask, "auto", torch.device("cuda")) == []


# Whole runs ------------------------------------------------------------------------------------
def _run(backend: str, **over: Any) -> Any:
    sparsity = {"density": 0.3, "backend": backend, **over.pop("sparsity", {})}
    cfg = ExperimentConfig.model_validate(tiny(sparsity=sparsity, **over))
    built = build_run(cfg)
    fit(built.state, built.data, built.hooks, batch_size=cfg.train.batch_size,
        eval_batch_size=cfg.train.eval_batch_size, drop_last=cfg.train.drop_last)
    return built


def _assert_same_run(a: Any, b: Any) -> None:
    assert sparse_layers(b.state.model) and not sparse_layers(a.state.model)
    sa, sb = a.state.model.state_dict(), b.state.model.state_dict()
    assert list(sa) == list(sb)
    for k in sa:
        torch.testing.assert_close(sb[k], sa[k], rtol=RTOL, atol=ATOL, msg=k)
    for n, m in b.mask.items():  # pruned weights exactly 0 on the sparse path too
        assert torch.all(sb[n][~m] == 0)
    ha, hb = a.state.history[-1], b.state.history[-1]
    assert hb["train_loss"] == pytest.approx(ha["train_loss"], rel=1e-4)
    assert hb["test_loss"] == pytest.approx(ha["test_loss"], rel=1e-4)


BACKENDS = ["sparse", "compact"]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("opt", OPTIMIZERS.names())
def test_runs_match_masked_for_every_optimizer(opt: str, backend: str) -> None:
    over = {"optim": {"name": opt, "lr": 0.01}, "regularization": {"l2": 1e-4},
            "train": {"epochs": 2}}
    _assert_same_run(_run("masked", **over), _run(backend, **over))


@pytest.mark.parametrize("backend", BACKENDS)
def test_runs_match_with_batchnorm_dropout_and_decoupled_decay(backend: str) -> None:
    over = {"model": {"batchnorm": True},
            "regularization": {"dropout": 0.2, "weight_decay": 0.01}}
    _assert_same_run(_run("masked", **over), _run(backend, **over))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("probe_set", ["fixed", "batch"])
def test_probe_egf_matches_masked(probe_set: str, backend: str) -> None:
    over = {"gradflow": {"enabled": True, "probe_set": probe_set, "points": 3}}
    a, b = _run("masked", **over), _run(backend, **over)
    _assert_same_run(a, b)
    pa, pb = a.state.extra["gradflow"], b.state.extra["gradflow"]
    assert [p["epoch"] for p in pa] == [p["epoch"] for p in pb] and len(pa) >= 2
    for p, q in zip(pa, pb, strict=True):
        for key in ("egf1", "egf2", "gf1", "gf2"):  # gf: unmasked, needs the raw gradient
            assert q[key] == pytest.approx(p[key], rel=1e-4), key


def test_rigl_run_matches_masked_as_the_mask_changes() -> None:
    over = {"sparsity": {"masker": "rigl", "dst": {"update_every": 3}},
            "gradflow": {"enabled": True, "points": 2}}
    a, b = _run("masked", **over), _run("sparse", **over)
    dst_a = next(h for h in a.hooks if getattr(h, "name", "") == "dst")
    dst_b = next(h for h in b.hooks if getattr(h, "name", "") == "dst")
    assert len(dst_b.log) >= 3 and sum(sum(r["grown"].values()) for r in dst_b.log) > 0
    for ra, rb in zip(dst_a.log, dst_b.log, strict=True):  # RigL grew from the raw gradient
        assert ra["grown"] == rb["grown"]
    for n in a.mask:
        assert torch.equal(a.mask[n], b.mask[n])
    _assert_same_run(a, b)


@pytest.mark.parametrize("backend", BACKENDS)
def test_sparse_runs_are_deterministic(backend: str) -> None:
    a, b = _run(backend), _run(backend)
    for k, v in a.state.model.state_dict().items():
        assert torch.equal(v, b.state.model.state_dict()[k]), k


# Config ---------------------------------------------------------------------------------------
def test_default_backend_keeps_ids_and_refuses_unknown_names() -> None:
    base = tiny(sparsity={"density": 0.3})
    explicit = tiny(sparsity={"density": 0.3, "backend": "masked"})
    other = tiny(sparsity={"density": 0.3, "backend": "sparse"})
    assert config_id(ExperimentConfig.model_validate(base)) == config_id(
        ExperimentConfig.model_validate(explicit))
    assert config_id(ExperimentConfig.model_validate(other)) != config_id(
        ExperimentConfig.model_validate(base))
    with pytest.raises(ValueError, match="backend"):
        ExperimentConfig.model_validate(tiny(sparsity={"backend": "csr"}))
    # a dense run ignores the backend: the same id (and run) under every backend
    dense = [ExperimentConfig.model_validate(tiny(sparsity={"backend": b}))
             for b in ("masked", "auto", "compact")]
    assert len({config_id(c) for c in dense}) == 1
    assert {c.sparsity.effective_backend for c in dense} == {"masked"}
    assert ExperimentConfig.model_validate(other).sparsity.effective_backend == "sparse"


def test_vectorized_engine_keeps_to_masked_runs() -> None:
    masked = ExperimentConfig.model_validate(tiny(sparsity={"density": 0.3}))
    sparse = ExperimentConfig.model_validate(tiny(sparsity={"density": 0.3, "backend": "auto"}))
    dense = ExperimentConfig.model_validate(tiny(sparsity={"backend": "auto"}))
    assert vectorizable(masked) and not vectorizable(sparse) and vectorizable(dense)


def test_auto_in_a_run_puts_only_large_sparse_linear_layers_on_the_sparse_path() -> None:
    cfg = ExperimentConfig.model_validate(tiny(
        model={"width": 300}, sparsity={"density": 0.02, "backend": "auto"}))
    built = build_run(cfg)
    # hidden.1 is 300 x 300 = 90,000 weights; the input (40 x 300) and output layers are small
    assert list(sparse_layers(built.state.model)) == ["hidden.1.linear.weight"]
    assert all(m._sparse.enforcer is built.enforcer
               for m in sparse_layers(built.state.model).values())


class _MaskedGradsSeen:
    """Last hook: the optimizer sees gradients exactly 0 at pruned positions, every step."""

    def __init__(self, built: Any) -> None:
        self.built, self.steps = built, 0

    def after_backward(self, state: Any) -> None:
        if state.skip_update:  # a mask-update batch takes no step (masked by the old mask)
            return
        for n, p in self.built.enforcer.params.items():
            assert torch.all(p.grad[~self.built.mask[n]] == 0), n
        self.steps += 1


@pytest.mark.parametrize("masker", ["random", "rigl"])
def test_the_optimizer_sees_masked_gradients_on_the_sparse_path(masker: str) -> None:
    cfg = ExperimentConfig.model_validate(tiny(sparsity={
        "density": 0.3, "backend": "sparse", "masker": masker, "dst": {"update_every": 2}}))
    built = build_run(cfg)
    seen = _MaskedGradsSeen(built)
    fit(built.state, built.data, [*built.hooks, seen], batch_size=cfg.train.batch_size,
        eval_batch_size=cfg.train.eval_batch_size)
    assert seen.steps > 10
    # the reused gradient buffer was handed out (the partial path ran)
    assert all(m._sparse.grad_buffer is not None
               for m in sparse_layers(built.state.model).values())


@pytest.mark.parametrize("sparsity, reg", [
    ({"backend": "sparse", "masker": "rigl", "dst": {"update_every": 4}}, {}),
    ({"backend": "compact"}, {"weight_decay": 0.01}),  # optimizer state per active weight
])
def test_runs_in_parts_are_bitwise_the_run_in_one_go(tmp_path: Any, sparsity: dict,
                                                       reg: dict) -> None:
    from sparseflow.train.run import run_experiment

    cfg = ExperimentConfig.model_validate(tiny(
        optim={"name": "adam", "lr": 0.01}, train={"epochs": 3}, regularization=reg,
        sparsity={"density": 0.3, **sparsity}))
    whole = run_experiment(cfg, tmp_path / "one")
    assert run_experiment(cfg, tmp_path / "parts", until_epoch=1).status == "partial"
    parts = run_experiment(cfg, tmp_path / "parts")
    a = torch.load(whole.run_dir / "final.pt", weights_only=True)
    b = torch.load(parts.run_dir / "final.pt", weights_only=True)
    assert list(a) == list(b) and all(torch.equal(a[k], b[k]) for k in a)
    assert whole.summary.get("mask_updates") == parts.summary.get("mask_updates")
    assert (whole.summary.get("mask_updates", 0) > 0) == ("masker" in sparsity)
    assert whole.summary["test_loss"] == parts.summary["test_loss"]
