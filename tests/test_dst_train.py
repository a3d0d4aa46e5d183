"""Dynamic sparse training inside real runs: at every update and every step each layer keeps
exactly its budget and pruned weights and their optimizer state are exactly 0 (every registered
optimizer, with and without BatchNorm, with coupled L2 and decoupled weight decay); a skipped
step moves nothing; the schedule the run follows is the reference's."""

from __future__ import annotations

from typing import Any

import pytest
import torch

import sparseflow  # noqa: F401
from sparseflow.config.schema import ExperimentConfig
from sparseflow.registry import OPTIMIZERS
from sparseflow.sparsity.dst import applied_steps, drop_and_grow, drop_count
from sparseflow.train.build import build_run
from sparseflow.train.loop import fit

from tests.conftest import tiny


def _cfg(**over: Any) -> ExperimentConfig:
    sparsity = {"density": 0.3, "masker": "rigl", "dst": {"update_every": 3}}
    sparsity.update(over.pop("sparsity", {}))
    return ExperimentConfig.model_validate(tiny(sparsity=sparsity, **over))


def _dst(built: Any) -> Any:
    return next(h for h in built.hooks if getattr(h, "name", "") == "dst")


class Checker:
    """Last hook of the run: checks the invariants around every step."""

    def __init__(self, built: Any) -> None:
        self.built, self.dst = built, _dst(built)
        self.mask = built.mask
        self.budget = {n: int(m.sum()) for n, m in self.mask.items()}
        self.updates = self.skipped = 0

    def before_step(self, state: Any) -> None:
        self.params = {n: p.detach().clone() for n, p in state.model.named_parameters()}
        self.opt_state = {id(p): {k: (v.clone() if torch.is_tensor(v) else v)
                                  for k, v in state.optimizer.state.get(p, {}).items()}
                          for p in state.model.parameters()}
        self.old = {n: m.clone() for n, m in self.mask.items()}
        self.n_log = len(self.dst.log)

    def after_backward(self, state: Any) -> None:
        if state.skip_update:
            return
        # The optimizer sees gradients masked by the (possibly new) mask.
        for n, p in self.dst.enforcer.params.items():
            assert torch.all(p.grad[~self.mask[n]] == 0)

    def after_step(self, state: Any) -> None:
        opt, model = state.optimizer, state.model
        named = dict(model.named_parameters())
        for n in self.mask:
            p, m = named[n], self.mask[n]
            assert int(m.sum()) == self.budget[n], f"{n}: count changed"
            assert torch.all(p[~m] == 0), f"{n}: a pruned weight is not 0"
            for key, v in opt.state.get(p, {}).items():
                if torch.is_tensor(v) and v.shape == p.shape:
                    assert torch.all(v[~m] == 0), f"{n}: state {key} not 0 at pruned positions"
        if len(self.dst.log) == self.n_log:
            return
        self.updates += 1
        if state.skip_update:
            self.skipped += 1
            self._nothing_moved(named, opt)

    def _nothing_moved(self, named: dict[str, Any], opt: Any) -> None:
        for name, p in named.items():
            before, st_before = self.params[name], self.opt_state[id(p)]
            st_after = opt.state.get(p, {})
            assert st_after.keys() == st_before.keys()
            if name not in self.mask:
                assert torch.equal(p.detach(), before), f"{name} moved on a skipped step"
                for k, v in st_after.items():
                    assert torch.equal(torch.as_tensor(v), torch.as_tensor(st_before[k]))
                continue
            old, new = self.old[name], self.mask[name]
            grown, kept = new & ~old, old & new
            assert torch.all(p[grown] == 0), "a grown weight does not start at 0"
            # Kept weights (dropped and regrown ones included) are untouched.
            assert torch.equal(p.detach()[kept], before[kept]), f"{name}: a kept weight moved"
            for k, v in st_after.items():
                if torch.is_tensor(v) and v.shape == p.shape:
                    assert torch.equal(v[kept], st_before[k][kept]), k
                    assert torch.all(v[grown] == 0), f"{name}: state {k} of a grown weight"
                else:
                    assert torch.equal(torch.as_tensor(v), torch.as_tensor(st_before[k])), k


def _train(cfg: ExperimentConfig) -> tuple[Any, Checker]:
    built = build_run(cfg)
    checker = Checker(built)
    fit(built.state, built.data, [*built.hooks, checker], batch_size=cfg.train.batch_size,
        eval_batch_size=cfg.train.eval_batch_size, drop_last=cfg.train.drop_last)
    return built, checker


@pytest.mark.parametrize("opt_name", OPTIMIZERS.names())
@pytest.mark.parametrize("batchnorm", [False, True])
def test_invariants_at_every_update_and_step(opt_name: str, batchnorm: bool) -> None:
    reg = {"l2": 1e-3, "weight_decay": 0.05}
    cfg = _cfg(optim={"name": opt_name, "lr": 0.01}, model={"batchnorm": batchnorm},
               regularization=reg, train={"epochs": 2})
    built, checker = _train(cfg)
    dst = _dst(built)
    assert checker.updates == checker.skipped == len(dst.log) > 3
    assert any(sum(r["dropped"].values()) > 0 for r in dst.log)
    # Active weights did train and the mask did move.
    assert any(not torch.equal(built.mask[n], dst.ever[n]) for n in built.mask)


@pytest.mark.parametrize("masker", ["set", "rigl"])
def test_without_skip_the_step_uses_the_new_mask(masker: str) -> None:
    cfg = _cfg(sparsity={"masker": masker, "dst": {"update_every": 3, "skip_update": False}},
               optim={"name": "momentum", "lr": 0.01}, regularization={"weight_decay": 0.05})
    built, checker = _train(cfg)
    assert checker.updates == len(_dst(built).log) > 3 and checker.skipped == 0


def test_the_run_follows_the_reference_schedule() -> None:
    cfg = _cfg(optim={"name": "adam", "lr": 0.01},
               sparsity={"dst": {"update_every": 4, "start_step": 2, "end_fraction": 0.6}})
    built, _ = _train(cfg)
    dst, st = _dst(built), built.state
    batches = st.epochs * st.steps_per_epoch
    sim = applied_steps(batches, start_step=2, end_step=dst.end_step, update_every=4)
    assert [r["t"] for r in dst.log] == [t for t, up, _ in sim if up]
    assert [r["step"] for r in dst.log] == [i for i, (_, up, _) in enumerate(sim) if up]
    assert st.step == batches
    # Optimizer steps taken = batches − updates: Adam's own step counter agrees.
    assert dst.t == batches - len(dst.log)
    bias = dict(st.model.named_parameters())["out.bias"]
    assert int(st.optimizer.state[bias]["step"]) == dst.t
    fractions = [r["drop_fraction"] for r in dst.log]
    assert fractions == sorted(fractions, reverse=True) and fractions[0] > fractions[-1]


def test_rigl_grows_where_the_batch_gradient_is_largest() -> None:
    # One update (at t = 0: the next would be due after 10,000 steps), replayed by hand from the
    # raw gradient, weights and mask a spy saw on that batch.
    cfg = _cfg(optim={"name": "sgd", "lr": 0.01}, sparsity={"dst": {"update_every": 10_000}},
               train={"epochs": 1})
    built = build_run(cfg)
    dst, enf, st = _dst(built), built.enforcer, built.state
    seen: dict[str, Any] = {}

    class Spy:
        def after_backward(self, state: Any) -> None:  # runs before the enforcer: raw grads
            if state.step == 0:
                seen["grad"] = {n: p.grad.detach().clone() for n, p in enf.params.items()}
                seen["old"] = {n: m.clone() for n, m in built.mask.items()}
                seen["w"] = {n: p.detach().abs().clone() for n, p in enf.params.items()}

    fit(st, built.data, [Spy(), *built.hooks], batch_size=cfg.train.batch_size,
        eval_batch_size=cfg.train.eval_batch_size)
    assert len(dst.log) == 1 and dst.log[0]["t"] == 0
    assert dst.log[0]["drop_fraction"] == pytest.approx(0.3)
    changed = False
    for n, old in seen["old"].items():
        k = drop_count(int(old.sum()), 0.3)
        new, _, grown = drop_and_grow(seen["w"][n], old, seen["grad"][n].abs(), k)
        assert dst.log[0]["k"][n] == k > 0
        assert dst.log[0]["dropped"][n] == dst.log[0]["grown"][n] == int((old & ~new).sum())
        assert torch.equal(built.mask[n], new)
        changed |= not torch.equal(new, old)
    assert changed


def test_a_layer_with_every_weight_active_never_changes() -> None:
    first = "hidden.0.linear.weight"
    cfg = _cfg(sparsity={"layer_densities": {first: 1.0}}, optim={"name": "momentum",
                                                                  "lr": 0.01})
    built, checker = _train(cfg)
    dst = _dst(built)
    assert checker.updates > 3 and bool(built.mask[first].all())
    assert all(r["k"][first] > 0 and r["dropped"][first] == r["grown"][first] == 0
               for r in dst.log if r["drop_fraction"] > 0.01)
    assert any(r["dropped"]["out.weight"] > 0 for r in dst.log)
