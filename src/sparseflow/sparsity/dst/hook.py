"""The training hook of dynamic sparse training: when due, update every layer's mask.

Per update (batch at optimizer step ``t``, see :mod:`~sparseflow.sparsity.dst.schedule`), in
``after_backward`` — after the mask enforcer stashed the raw gradient and masked it, before
coupled L2 and decoupled weight decay:

1. optionally measure EGF (old mask, current weights);
2. per layer: ``k = int(n_active · drop_fraction(t))``; drop/grow by
   :func:`~sparseflow.sparsity.dst.update.drop_and_grow` with the masker's grow score; the
   positions that changed (dropped, newly grown) restart at 0 (weight and optimizer state); the
   enforcer's mask is rewritten in place. The log records ``k`` and the net ``dropped``/``grown``
   (``k`` minus the weights dropped and regrown at once);
3. optionally measure EGF again (new mask, updated weights);
4. ``skip_update``: set ``state.skip_update`` so that the loop takes no optimizer step on this
   batch (and decoupled decay is not applied); otherwise the gradient is re-masked with the new
   mask (grown weights get their raw gradient) and the step goes ahead.

The SET and RigL random draws (SET's grow order) come from a stateless generator seeded by
(run seed, ``t``, layer index): no training RNG stream is consumed and a resumed run draws
the same.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from sparseflow.config.schema import DstConfig
from sparseflow.sparsity.dst.schedule import (
    check_window,
    drop_count,
    drop_fraction_at,
    end_step_of,
    first_last_update,
    is_update_step,
)
from sparseflow.sparsity.dst.update import drop_and_grow, restart_positions
from sparseflow.sparsity.enforce import MaskEnforcer
from sparseflow.sparsity.mask import Mask

GrowScore = Callable[[Tensor, Tensor | None, torch.Generator], Tensor]


def step_generator(seed: int, t: int, layer: int) -> torch.Generator:
    """A CPU generator determined by (run seed, step, layer index) alone (stateless draws)."""
    digest = hashlib.sha256(f"sparseflow.dst:{seed}:{t}:{layer}".encode()).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest[:8], "little"))


class DynamicSparsity:
    """Changes the mask during training (SET, RigL); keeps each layer's active count exact.

    Args:
        enforcer: the run's mask enforcer (its mask is updated in place).
        optimizer: the run's optimizer (its state is reset where the mask changes).
        grow: the masker's grow score (see :mod:`sparseflow.sparsity.dst.maskers`).
        cfg: ``sparsity.dst``.
        total_steps: the run's training steps (epochs × steps per epoch), for the end step.
        seed: the run seed (stateless draws).
        needs_grad: the grow score reads the current batch's raw gradient.
        needs_raw: keep the raw gradient on update batches anyway (for ``measure``).
        measure: called just before and just after each update, returns at least
            ``egf1``/``egf2`` (None = not measured); it must leave training untouched.
    """

    name = "dst"

    def __init__(self, enforcer: MaskEnforcer, optimizer: torch.optim.Optimizer,
                 grow: GrowScore, cfg: DstConfig, *, total_steps: int, seed: int,
                 needs_grad: bool, needs_raw: bool = False,
                 measure: Callable[[], dict[str, Any]] | None = None,
                 masker: str = "") -> None:
        self.enforcer, self.optimizer, self.grow, self.cfg = enforcer, optimizer, grow, cfg
        self.end_step = end_step_of(cfg.end_fraction, total_steps)
        check_window(cfg.start_step, self.end_step)
        self.seed, self.measure, self.masker = seed, measure, masker
        # The raw gradient: RigL's grow score; without skip_update the step uses it too.
        self.needs_raw = needs_grad or needs_raw or not cfg.skip_update
        self.needs_grad = needs_grad
        self.t = 0  # optimizer steps taken (the reference's global_step)
        self.last_update = first_last_update(cfg.update_every)
        self.ever = {n: m.clone() for n, m in enforcer.mask.items()}
        self.log: list[dict[str, Any]] = []
        #: The mask of the epoch early stopping keeps as best (see :meth:`keep_best`).
        self.best_mask: dict[str, Tensor] | None = None
        self._due = False
        self._kept_raw = False

    @property
    def mask(self) -> Mask:
        """The current mask (the enforcer's, updated in place)."""
        return self.enforcer.mask

    def due(self) -> bool:
        """Whether the batch at the current step ``t`` updates the mask."""
        c = self.cfg
        return is_update_step(self.t, self.last_update, start_step=c.start_step,
                              end_step=self.end_step, update_every=c.update_every)

    def drop_fraction(self) -> float:
        """The drop fraction at the current step ``t``."""
        c = self.cfg
        return drop_fraction_at(self.t, drop_fraction=c.drop_fraction, schedule=c.drop_schedule,
                                start_step=c.start_step, end_step=self.end_step)

    # Hook points --------------------------------------------------------------------------
    def before_step(self, state: Any) -> None:
        """Decide whether this batch updates; if so have the enforcer keep the raw gradient."""
        self._due = self.due()
        if self._due and self.needs_raw:
            self._kept_raw = self.enforcer.keep_raw
            self.enforcer.keep_raw = True

    def after_backward(self, state: Any) -> None:
        """Update the mask when due (after the enforcer, before L2 and weight decay)."""
        if not self._due:
            return
        record: dict[str, Any] = {"t": self.t, "step": int(getattr(state, "step", self.t)),
                                  "epoch": int(getattr(state, "epoch", 0)),
                                  "drop_fraction": self.drop_fraction()}
        if self.measure is not None:
            record["before"] = _egf(self.measure())
        raw = self.enforcer.raw_grads if self.needs_raw else {}
        record.update(self._update_layers(record["drop_fraction"], raw))
        if self.measure is not None:
            record["after"] = _egf(self.measure())
        if self.cfg.skip_update:
            state.skip_update = True
        else:
            self._remask_grads(raw)
        if self.needs_raw and not self._kept_raw:
            self.enforcer.keep_raw, self.enforcer.raw_grads = False, {}
        self.last_update = self.t
        self.log.append(record)

    def after_step(self, state: Any) -> None:
        """Count the optimizer step, unless this batch skipped it."""
        if not getattr(state, "skip_update", False):
            self.t += 1
        self._due = False

    # The update -----------------------------------------------------------------------------
    @torch.no_grad()
    def _update_layers(self, fraction: float, raw: dict[str, Tensor]) -> dict[str, Any]:
        scheduled, dropped, grown, densities = {}, {}, {}, {}
        for i, (name, param) in enumerate(self.enforcer.params.items()):
            old = self.mask[name].clone()  # set_layer rewrites the mask's tensor in place
            k = drop_count(int(old.sum()), fraction)
            grad = raw.get(name)
            if self.needs_grad and grad is None:  # a layer the forward did not use
                grad = torch.zeros_like(param)
            score = self.grow(param.detach(), grad, step_generator(self.seed, self.t, i))
            new, drop, _ = drop_and_grow(param.detach().abs(), old, score, k)
            # Only what changed restarts: a weight dropped and regrown keeps value and state.
            restart_positions(param, self.optimizer, old ^ new)
            self.enforcer.set_layer(name, new)
            self.ever[name] |= new
            scheduled[name] = k
            dropped[name] = int((old & ~new).sum())
            grown[name] = int((new & ~old).sum())
            densities[name] = int(new.sum()) / new.numel()
        return {"k": scheduled, "dropped": dropped, "grown": grown, "densities": densities}

    @torch.no_grad()
    def _remask_grads(self, raw: dict[str, Tensor]) -> None:
        """The batch's raw gradient masked by the new mask (grown weights get theirs)."""
        for name, param in self.enforcer.params.items():
            if param.grad is not None and name in raw:
                param.grad.copy_(raw[name])
                param.grad.masked_fill_(~self.mask[name].to(param.grad.device), 0.0)

    # Checkpoint ------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """The current mask, the ever-active union, the step counters and the update log."""
        return {"mask": {n: m.clone() for n, m in self.mask.items()},
                "ever": {n: m.clone() for n, m in self.ever.items()},
                "t": self.t, "last_update": self.last_update, "log": list(self.log),
                "best_mask": self.best_mask}

    def load_state_dict(self, sd: dict[str, Any]) -> None:
        """Restore, including the enforcer's mask (in place)."""
        for name, m in sd["mask"].items():
            self.enforcer.set_layer(name, m)
        self.ever = {n: m.to("cpu", torch.bool).clone() for n, m in sd["ever"].items()}
        self.t, self.last_update = int(sd["t"]), int(sd["last_update"])
        self.log = list(sd["log"])
        best = sd.get("best_mask")
        self.best_mask = None if best is None else {n: m.to("cpu") for n, m in best.items()}

    def keep_best(self, early: Any) -> BestMask:
        """A hook to place *after* early stopping with ``restore_best``: it keeps the mask of
        the best epoch, so that the final mask matches the restored weights."""
        return BestMask(self, early)

    def final_mask(self) -> dict[str, Tensor]:
        """The mask of the final weights: the best epoch's when early stopping restores it,
        else the current one."""
        if self.best_mask is not None:
            return self.best_mask
        return self.mask.to_dict()

    # Outputs ---------------------------------------------------------------------------------
    def ever_active(self) -> tuple[float, dict[str, float]]:
        """Fraction of weights active at some point: all masked layers, and per layer."""
        per = {n: int(m.sum()) / m.numel() for n, m in self.ever.items()}
        total = sum(int(m.sum()) for m in self.ever.values())
        size = sum(m.numel() for m in self.ever.values())
        return (total / size if size else 1.0), per

    def summarize(self, state: Any) -> dict[str, Any]:
        """Summary values: updates made, ever-active fractions, final per-layer densities."""
        total, per = self.ever_active()
        return {"mask_updates": len(self.log), "ever_active": total,
                "ever_active_per_layer": per,
                "final_layer_densities": {n: self.mask.density(n) for n in self.mask}}

    def series(self) -> dict[str, Any]:
        """The per-update series (``dst.json``): schedule and one record per update."""
        c = self.cfg
        return {"masker": self.masker, "start_step": c.start_step, "end_step": self.end_step,
                "update_every": c.update_every, "drop_fraction": c.drop_fraction,
                "drop_schedule": c.drop_schedule, "skip_update": c.skip_update,
                "updates": self.log}


class BestMask:
    """Runs after early stopping's ``end_epoch``: snapshots the mask when the epoch is the best."""

    def __init__(self, dst: DynamicSparsity, early: Any) -> None:
        self.dst, self.early = dst, early

    def end_epoch(self, state: Any) -> None:
        """Keep the mask of an epoch that early stopping just made the best."""
        if self.early.best_epoch == state.epoch and self.early.best_state is not None:
            self.dst.best_mask = {n: m.clone() for n, m in self.dst.mask.items()}


def _egf(result: dict[str, Any]) -> dict[str, float]:
    return {k: float(result[k]) for k in ("egf1", "egf2")}
