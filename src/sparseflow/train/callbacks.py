"""Built-in hooks of the training loop: lr schedule, early stopping, checkpointing."""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from typing import Any

from torch import Tensor

from sparseflow.config.schema import EarlyStoppingConfig, ScheduleConfig
from sparseflow.optim.schedules import lr_factor
from sparseflow.train.hooks import Hook
from sparseflow.train.state import TrainState


class LRSchedule(Hook):
    """Sets every param group's lr before each step from the schedule (a function of step)."""

    def __init__(self, base_lr: float, cfg: ScheduleConfig) -> None:
        self.base_lr = base_lr
        self.cfg = cfg

    def before_step(self, state: TrainState) -> None:
        """lr = base lr · schedule factor at this step."""
        lr = self.base_lr * lr_factor(state.step, state.steps_per_epoch, state.epochs, self.cfg)
        for group in state.optimizer.param_groups:
            group["lr"] = lr


class EarlyStopping(Hook):
    """Stops when validation loss has not improved by ``min_delta`` for ``patience`` epochs.

    A non-finite validation loss (a diverged run) counts as no improvement. With
    ``restore_best`` the best epoch's weights are loaded when training stops or ends.
    """

    name = "early_stopping"

    def __init__(self, cfg: EarlyStoppingConfig) -> None:
        self.cfg = cfg
        self.best_loss = math.inf
        self.best_epoch = 0
        self.bad_epochs = 0
        self.best_state: dict[str, Tensor] | None = None

    def end_epoch(self, state: TrainState) -> None:
        """Track the best epoch; set ``state.stop`` after ``patience`` bad epochs."""
        loss = state.last["val_loss"]
        if math.isfinite(loss) and loss < self.best_loss - self.cfg.min_delta:
            self.best_loss, self.best_epoch, self.bad_epochs = loss, state.epoch, 0
            if self.cfg.restore_best:
                self.best_state = copy.deepcopy(state.model.state_dict())
        else:
            self.bad_epochs += 1
            if self.bad_epochs >= self.cfg.patience:
                state.stop = True
                state.stop_reason = (f"early stop: no val_loss improvement for "
                                     f"{self.cfg.patience} epochs")

    def finish(self, state: TrainState) -> None:
        """Load the best weights if asked (called once training is over)."""
        if self.cfg.restore_best and self.best_state is not None:
            state.model.load_state_dict(self.best_state)

    def state_dict(self) -> dict[str, Any]:
        """Checkpointed state."""
        return {"best_loss": self.best_loss, "best_epoch": self.best_epoch,
                "bad_epochs": self.bad_epochs, "best_state": self.best_state}

    def load_state_dict(self, sd: dict[str, Any]) -> None:
        """Restore from a checkpoint."""
        self.best_loss, self.best_epoch = sd["best_loss"], sd["best_epoch"]
        self.bad_epochs, self.best_state = sd["bad_epochs"], sd["best_state"]


class EpochCallback(Hook):
    """Calls ``fn(state)`` at the end of every epoch (checkpoint writer, progress display)."""

    def __init__(self, fn: Callable[[TrainState], None]) -> None:
        self.fn = fn

    def end_epoch(self, state: TrainState) -> None:
        """Forward to the callback."""
        self.fn(state)
