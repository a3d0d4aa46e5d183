"""The state of a batched group of K runs, and the per-model pieces it is built from."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from sparseflow.config.schema import ExperimentConfig
from sparseflow.train.vectorized.functional import MLPSpec
from sparseflow.train.vectorized.optim import BatchedOptimizer

Params = dict[str, Tensor]


@dataclass
class Member:
    """What one run contributes: its config, generators, mask and probe set."""

    cfg: ExperimentConfig
    generators: dict[str, torch.Generator]
    masks: dict[str, Tensor] | None  # name → bool (out, in)
    probe_x: Tensor | None
    probe_y: Tensor | None


@dataclass
class EarlyState:
    """Per-model early stopping (the EarlyStopping hook's fields, one per model)."""

    best_loss: float = math.inf
    best_epoch: int = 0
    bad_epochs: int = 0
    best_state: dict[str, Tensor] | None = None


@dataclass
class GroupState:
    """Everything that changes while a group trains; checkpointed after every epoch."""

    spec: MLPSpec
    params: Params  # name → (K, …) leaf tensors requiring grad
    buffers: Params  # name → (K, …)
    masks: dict[str, Tensor]  # name → (K, out, in) bool, for masked layers
    optimizer: BatchedOptimizer
    base_lr: Tensor  # (K,)
    members: list[Member]
    epochs: int
    steps_per_epoch: int
    epoch: int = 0
    step: int = 0
    active: Tensor = field(default_factory=lambda: torch.ones(0, dtype=torch.bool))
    epochs_done: list[int] = field(default_factory=list)
    steps_done: list[int] = field(default_factory=list)
    stop_reason: list[str] = field(default_factory=list)
    history: list[list[dict[str, float]]] = field(default_factory=list)
    gradflow: list[list[dict[str, Any]]] = field(default_factory=list)
    early: list[EarlyState] = field(default_factory=list)
    seconds: float = 0.0
    #: name → (0/1 keep mask in the params' dtype, bool pruned mask), derived from ``masks`` on
    #: first use (what :func:`sparseflow.sparsity.enforce.zero_pruned_` takes; not saved).
    mask_pairs: dict[str, tuple[Tensor, Tensor]] = field(default_factory=dict)

    @property
    def k(self) -> int:
        """Number of models."""
        return len(self.members)

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to resume the group exactly."""
        return {
            "params": {n: p.detach() for n, p in self.params.items()},
            "buffers": self.buffers, "optimizer": self.optimizer.state_dict(),
            "generators": [{s: g.get_state() for s, g in m.generators.items()}
                           for m in self.members],
            "epoch": self.epoch, "step": self.step, "active": self.active,
            "epochs_done": self.epochs_done, "steps_done": self.steps_done,
            "stop_reason": self.stop_reason, "history": self.history,
            "gradflow": self.gradflow, "seconds": self.seconds,
            "early": [vars(e) for e in self.early],
        }

    def load_state_dict(self, sd: dict[str, Any]) -> None:
        """Restore from :meth:`state_dict`."""
        with torch.no_grad():
            for n, p in self.params.items():
                p.copy_(sd["params"][n])
            for n, b in self.buffers.items():
                b.copy_(sd["buffers"][n])
        self.optimizer.load_state_dict(sd["optimizer"])
        for m, states in zip(self.members, sd["generators"], strict=True):
            for s, st in states.items():
                m.generators[s].set_state(st)
        for key in ("epoch", "step", "active", "epochs_done", "steps_done", "stop_reason",
                    "history", "gradflow", "seconds"):
            setattr(self, key, sd[key])
        self.early = [EarlyState(**e) for e in sd["early"]]
