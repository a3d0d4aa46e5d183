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
    """Base: holds the config, per-name state and the step count."""

    def __init__(self, params: Params, cfg: OptimConfig) -> None:
        self.params, self.cfg = params, cfg
        self.state: dict[str, dict[str, Tensor]] = {n: {} for n in params}
        self.steps = 0

    @torch.no_grad()
    def step(self, lr: Tensor) -> None:
        """One update of every parameter with per-model learning rates ``lr`` (K,)."""
        self.steps += 1
        for name, p in self.params.items():
            if p.grad is not None:
                self._update(p, p.grad, self.state[name], _lr(lr, p))

    def _update(self, p: Tensor, g: Tensor, s: dict[str, Tensor], lr: Tensor) -> None:
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

    def _update(self, p: Tensor, g: Tensor, s: dict[str, Tensor], lr: Tensor) -> None:
        if self.momentum:
            if "momentum_buffer" not in s:
                s["momentum_buffer"] = g.clone()
            else:
                s["momentum_buffer"].mul_(self.momentum).add_(g)
            buf = s["momentum_buffer"]
            g = g.add(buf, alpha=self.momentum) if self.nesterov else buf
        p.sub_(lr * g)


class Adagrad(BatchedOptimizer):
    """torch.optim.Adagrad (lr_decay 0, initial accumulator 0)."""

    def _update(self, p: Tensor, g: Tensor, s: dict[str, Tensor], lr: Tensor) -> None:
        acc = s.setdefault("sum", torch.zeros_like(p))
        acc.addcmul_(g, g, value=1.0)
        p.sub_(lr * g / (acc.sqrt() + self.cfg.eps))


class Adam(BatchedOptimizer):
    """torch.optim.Adam / AdamW with weight_decay 0 (decoupled decay is applied by the loop)."""

    def _update(self, p: Tensor, g: Tensor, s: dict[str, Tensor], lr: Tensor) -> None:
        b1, b2 = self.cfg.betas
        m = s.setdefault("exp_avg", torch.zeros_like(p))
        v = s.setdefault("exp_avg_sq", torch.zeros_like(p))
        m.lerp_(g, 1 - b1)
        v.mul_(b2).addcmul_(g, g, value=1 - b2)
        t = self.steps
        step_size = lr / (1 - b1 ** t)
        denom = v.sqrt() / math.sqrt(1 - b2 ** t) + self.cfg.eps
        p.sub_(step_size * m / denom)


class RMSprop(BatchedOptimizer):
    """torch.optim.RMSprop (not centered), optional momentum."""

    def __init__(self, params: Params, cfg: OptimConfig, momentum: float) -> None:
        super().__init__(params, cfg)
        self.momentum = momentum

    def _update(self, p: Tensor, g: Tensor, s: dict[str, Tensor], lr: Tensor) -> None:
        a = self.cfg.alpha
        sq = s.setdefault("square_avg", torch.zeros_like(p))
        sq.mul_(a).addcmul_(g, g, value=1 - a)
        avg = sq.sqrt().add_(self.cfg.eps)
        if self.momentum > 0:
            buf = s.setdefault("momentum_buffer", torch.zeros_like(p))
            buf.mul_(self.momentum).addcdiv_(g, avg)
            p.sub_(lr * buf)
        else:
            p.sub_(lr * g / avg)


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
