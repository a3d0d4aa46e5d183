"""Optimizer registry.

Each entry builds a ``torch.optim.Optimizer`` from parameter groups and an :class:`OptimConfig`.
All optimizers are built with ``weight_decay=0``: coupled L2 and decoupled weight decay are
applied by :mod:`sparseflow.optim.regularizers` in one place, the same way for every optimizer
(decoupled decay there is exactly what AdamW does: w ← w − lr·wd·w before the Adam update).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch

from sparseflow.config.schema import OptimConfig
from sparseflow.registry import OPTIMIZERS

Params = Iterable[Any]


def _momentum(cfg: OptimConfig, default: float) -> float:
    return default if cfg.momentum is None else cfg.momentum


@OPTIMIZERS.register("sgd")
def sgd(params: Params, cfg: OptimConfig) -> torch.optim.Optimizer:
    """Plain SGD (momentum 0 unless optim.momentum is set)."""
    return torch.optim.SGD(params, lr=cfg.lr, momentum=_momentum(cfg, 0.0))


@OPTIMIZERS.register("momentum")
def momentum(params: Params, cfg: OptimConfig) -> torch.optim.Optimizer:
    """SGD with heavy-ball momentum (0.9 by default), the paper's 'Mom (0.9)'."""
    return torch.optim.SGD(params, lr=cfg.lr, momentum=_momentum(cfg, 0.9))


@OPTIMIZERS.register("nesterov")
def nesterov(params: Params, cfg: OptimConfig) -> torch.optim.Optimizer:
    """SGD with Nesterov momentum (0.9 by default)."""
    return torch.optim.SGD(params, lr=cfg.lr, momentum=_momentum(cfg, 0.9), nesterov=True)


@OPTIMIZERS.register("adagrad")
def adagrad(params: Params, cfg: OptimConfig) -> torch.optim.Optimizer:
    """Adagrad (accumulated squared gradients)."""
    return torch.optim.Adagrad(params, lr=cfg.lr, eps=cfg.eps)


@OPTIMIZERS.register("adam")
def adam(params: Params, cfg: OptimConfig) -> torch.optim.Optimizer:
    """Adam (EWMA of gradients and squared gradients)."""
    return torch.optim.Adam(params, lr=cfg.lr, betas=cfg.betas, eps=cfg.eps)


@OPTIMIZERS.register("adamw")
def adamw(params: Params, cfg: OptimConfig) -> torch.optim.Optimizer:
    """AdamW: Adam with decoupled weight decay (set regularization.weight_decay)."""
    # torch's AdamW with weight_decay=0 is Adam; the decoupled decay itself is applied by the
    # DecoupledWeightDecay hook, identically to AdamW's own (decay before the moment update).
    return torch.optim.AdamW(params, lr=cfg.lr, betas=cfg.betas, eps=cfg.eps, weight_decay=0.0)


@OPTIMIZERS.register("rmsprop")
def rmsprop(params: Params, cfg: OptimConfig) -> torch.optim.Optimizer:
    """RMSProp (EWMA of squared gradients; momentum 0 unless optim.momentum is set)."""
    return torch.optim.RMSprop(params, lr=cfg.lr, alpha=cfg.alpha, eps=cfg.eps,
                               momentum=_momentum(cfg, 0.0))


def build_optimizer(params: Params, cfg: OptimConfig) -> torch.optim.Optimizer:
    """Build the optimizer named by ``cfg.name`` over ``params``."""
    return OPTIMIZERS.get(cfg.name)(params, cfg)
