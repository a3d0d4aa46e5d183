"""Optimizers over stacked parameters (K models × …) with one learning rate per model.

Each reproduces the update of its ``torch.optim`` counterpart as :mod:`sparseflow.optim`
builds it (weight_decay 0; regularization is applied by the loop, as in separate runs), so a
model of a batched run follows its separate run to float rounding. The state is kept per
parameter name, with the leading model dimension, and is zero wherever the gradient has always
been zero (pruned positions).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor

from sparseflow.config.schema import OptimConfig
from sparseflow.errors import ConfigError

Params = dict[str, Tensor]


def _lr(lr: Tensor, like: Tensor) -> Tensor:
    """(K,) learning rates viewed to broadcast against a (K, …) tensor."""
    return lr.view(-1, *([1] * (like.dim() - 1)))


class BatchedOptimizer:
    """Base: holds the config, per-name state and the step count.

    Updates use ``torch._foreach_*`` over all parameters at once: the models are tiny, so the
    cost of a step is the number of tensor operations, not their size.
    """

    def __init__(self, params: Params, cfg: OptimConfig) -> None:
        self.params, self.cfg = params, cfg
        self.state: dict[str, dict[str, Tensor]] = {n: {} for n in params}
        self.steps = 0

    def _buffers(self, names: list[str], key: str, ps: list[Tensor]) -> list[Tensor]:
        out = []
        for n, p in zip(names, ps, strict=True):
            st = self.state[n]
            if key not in st:
                st[key] = torch.zeros_like(p)
            out.append(st[key])
        return out

    @torch.no_grad()
    def step(self, lr: Tensor) -> None:
        """One update of every parameter with per-model learning rates ``lr`` (K,)."""
        self.steps += 1
        names = [n for n, p in self.params.items() if p.grad is not None]
        if not names:
            return
        ps = [self.params[n] for n in names]
        gs = [p.grad for p in ps]
        self._update(names, ps, gs, [_lr(lr, p) for p in ps])

    def _update(self, names: list[str], ps: list[Tensor], gs: list[Tensor],
                lrs: list[Tensor]) -> None:
        raise NotImplementedError

    def state_dict(self) -> dict[str, object]:
        """State for a checkpoint."""
        return {"steps": self.steps, "state": {n: dict(s) for n, s in self.state.items()}}

    def load_state_dict(self, sd: dict) -> None:
        """Restore from :meth:`state_dict`."""
        self.steps = sd["steps"]
        self.state = {n: dict(s) for n, s in sd["state"].items()}


class SGD(BatchedOptimizer):
    """torch.optim.SGD (dampening 0): heavy-ball or Nesterov momentum when momentum > 0."""

    def __init__(self, params: Params, cfg: OptimConfig, momentum: float,
                 nesterov: bool = False) -> None:
        super().__init__(params, cfg)
        self.momentum, self.nesterov = momentum, nesterov

    def _update(self, names: list[str], ps: list[Tensor], gs: list[Tensor],
                lrs: list[Tensor]) -> None:
        if self.momentum:
            if "momentum_buffer" not in self.state[names[0]]:
                # torch starts the buffer at the first gradient
                for n, g in zip(names, gs, strict=True):
                    self.state[n]["momentum_buffer"] = g.clone()
            else:
                bufs = [self.state[n]["momentum_buffer"] for n in names]
                torch._foreach_mul_(bufs, self.momentum)
                torch._foreach_add_(bufs, gs)
            bufs = [self.state[n]["momentum_buffer"] for n in names]
            gs = torch._foreach_add(gs, bufs, alpha=self.momentum) if self.nesterov else bufs
        torch._foreach_sub_(ps, torch._foreach_mul(gs, lrs))


class Adagrad(BatchedOptimizer):
    """torch.optim.Adagrad (lr_decay 0, initial accumulator 0)."""

    def _update(self, names: list[str], ps: list[Tensor], gs: list[Tensor],
                lrs: list[Tensor]) -> None:
        sums = self._buffers(names, "sum", ps)
        torch._foreach_addcmul_(sums, gs, gs, value=1.0)
        std = torch._foreach_sqrt(sums)
        torch._foreach_add_(std, self.cfg.eps)
        upd = torch._foreach_div(gs, std)
        torch._foreach_mul_(upd, lrs)
        torch._foreach_sub_(ps, upd)


class Adam(BatchedOptimizer):
    """torch.optim.Adam / AdamW with weight_decay 0 (decoupled decay is applied by the loop)."""

    def _update(self, names: list[str], ps: list[Tensor], gs: list[Tensor],
                lrs: list[Tensor]) -> None:
        b1, b2 = self.cfg.betas
        ms = self._buffers(names, "exp_avg", ps)
        vs = self._buffers(names, "exp_avg_sq", ps)
        torch._foreach_lerp_(ms, gs, 1 - b1)
        torch._foreach_mul_(vs, b2)
        torch._foreach_addcmul_(vs, gs, gs, value=1 - b2)
        t = self.steps
        denom = torch._foreach_sqrt(vs)
        torch._foreach_div_(denom, math.sqrt(1 - b2 ** t))
        torch._foreach_add_(denom, self.cfg.eps)
        upd = torch._foreach_div(ms, denom)
        torch._foreach_mul_(upd, [lr / (1 - b1 ** t) for lr in lrs])
        torch._foreach_sub_(ps, upd)


class RMSprop(BatchedOptimizer):
    """torch.optim.RMSprop (not centered), optional momentum."""

    def __init__(self, params: Params, cfg: OptimConfig, momentum: float) -> None:
        super().__init__(params, cfg)
        self.momentum = momentum

    def _update(self, names: list[str], ps: list[Tensor], gs: list[Tensor],
                lrs: list[Tensor]) -> None:
        a = self.cfg.alpha
        sq = self._buffers(names, "square_avg", ps)
        torch._foreach_mul_(sq, a)
        torch._foreach_addcmul_(sq, gs, gs, value=1 - a)
        avg = torch._foreach_sqrt(sq)
        torch._foreach_add_(avg, self.cfg.eps)
        if self.momentum > 0:
            bufs = self._buffers(names, "momentum_buffer", ps)
            torch._foreach_mul_(bufs, self.momentum)
            torch._foreach_addcdiv_(bufs, gs, avg)
            torch._foreach_sub_(ps, torch._foreach_mul(bufs, lrs))
        else:
            upd = torch._foreach_div(gs, avg)
            torch._foreach_mul_(upd, lrs)
            torch._foreach_sub_(ps, upd)


def _mom(cfg: OptimConfig, default: float) -> float:
    return default if cfg.momentum is None else cfg.momentum


#: Batched counterpart of each registered optimizer (same defaults as sparseflow.optim).
BATCHED: dict[str, Callable[[Params, OptimConfig], BatchedOptimizer]] = {
    "sgd": lambda p, c: SGD(p, c, _mom(c, 0.0)),
    "momentum": lambda p, c: SGD(p, c, _mom(c, 0.9)),
    "nesterov": lambda p, c: SGD(p, c, _mom(c, 0.9), nesterov=True),
    "adagrad": Adagrad,
    "adam": Adam,
    "adamw": Adam,
    "rmsprop": lambda p, c: RMSprop(p, c, _mom(c, 0.0)),
}


def build_batched_optimizer(params: Params, cfg: OptimConfig) -> BatchedOptimizer:
    """The batched optimizer named by ``cfg.name``."""
    if cfg.name not in BATCHED:
        raise ConfigError(f"optimizer {cfg.name!r} has no batched implementation; run with "
                          "--vectorize off")
    return BATCHED[cfg.name](params, cfg)
