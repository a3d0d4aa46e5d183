"""TensorBoard log of a CLI run (``train.log: tensorboard``), to watch runs and studies live.

Written to the run directory's ``tb/`` (``tensorboard --logdir DIR/runs`` shows every run of a
study side by side), with the epoch as the step of every scalar:

- ``loss/train``, ``loss/val``, ``loss/test``, ``accuracy/…`` likewise, and ``lr``: after
  each epoch (from the epoch's record in ``state.history``);
- ``gradflow/<measure>`` for every measure of :data:`~sparseflow.gradflow.MEASURES`, and
  ``gradflow_layer/<layer>/norm2`` (masked L2 norm of the layer's gradient) and ``…/norm2_raw``
  (unmasked): at each probe point, as the probe records it (epoch 0 = before the first update).

The hook only reads what the loop and the probe already recorded, so results are the same with
or without it. Place it after the probe in the hook list (it logs the probe's new points).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sparseflow.errors import ConfigError
from sparseflow.gradflow import MEASURES
from sparseflow.train.hooks import Hook
from sparseflow.train.state import TrainState

#: Sub-directory of the run directory the log is written to.
TB_DIR = "tb"

#: ``state.history`` key → TensorBoard tag.
EPOCH_TAGS = {
    "train_loss": "loss/train",
    "val_loss": "loss/val",
    "test_loss": "loss/test",
    "train_accuracy": "accuracy/train",
    "val_accuracy": "accuracy/val",
    "test_accuracy": "accuracy/test",
    "lr": "lr",
}

#: Per-layer values logged at each probe point.
LAYER_KEYS = ("norm2", "norm2_raw")


def check_tensorboard() -> None:
    """ConfigError naming the missing package unless ``tensorboard`` imports."""
    try:
        import tensorboard  # noqa: F401  (torch's SummaryWriter needs it)
    except ImportError as exc:
        raise ConfigError("train.log: tensorboard needs the tensorboard package: pip install "
                          "tensorboard (or set train.log: none)") from exc


def _summary_writer(log_dir: Path, purge_step: int | None) -> Any:
    """A SummaryWriter on ``log_dir``, or ConfigError naming the missing package."""
    check_tensorboard()
    from torch.utils.tensorboard import SummaryWriter

    return SummaryWriter(log_dir=str(log_dir), purge_step=purge_step)


class TensorBoardLog(Hook):
    """Writes a run's epoch records and gradient-flow points as TensorBoard scalars.

    Args:
        log_dir: where the event files go (the run directory's ``tb/``).
    """

    def __init__(self, log_dir: str | Path) -> None:
        self.log_dir = Path(log_dir)
        self._writer: Any = None
        self._points_logged = 0

    def begin(self, state: TrainState) -> None:
        """Open the writer; after a resume, drop events of epochs not checkpointed."""
        # Events past the checkpoint's epoch (all of them when starting over, e.g. without
        # checkpoints) came from an interrupted attempt and are written again, so TensorBoard
        # purges them (purge_step) instead of showing both.
        purge = state.epoch + 1 if state.epoch > 0 else 0
        self._writer = _summary_writer(self.log_dir, purge)
        points = state.extra.get("gradflow", [])
        if state.epoch > 0:
            self._points_logged = len(points)  # logged before the interruption
        self._log_points(state)

    def end_epoch(self, state: TrainState) -> None:
        """Log the epoch's record and any new probe point, then flush (for live viewing)."""
        record = state.history[-1]
        for key, tag in EPOCH_TAGS.items():
            if record.get(key) is not None:  # None: the split was not evaluated then
                self._writer.add_scalar(tag, float(record[key]), record["epoch"])
        self._log_points(state)
        self._writer.flush()

    def end(self, state: TrainState) -> None:
        """Log the early-stopping point, if the probe measured one at the end."""
        self._log_points(state)
        self.close()

    def close(self) -> None:
        """Flush and close the writer (idempotent)."""
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def _log_points(self, state: TrainState) -> None:
        points = state.extra.get("gradflow", [])
        for point in points[self._points_logged:]:
            epoch = point["epoch"]
            for key in MEASURES:
                self._writer.add_scalar(f"gradflow/{key}", float(point[key]), epoch)
            for layer, values in point["per_layer"].items():
                for key in LAYER_KEYS:
                    self._writer.add_scalar(f"gradflow_layer/{layer}/{key}",
                                            float(values[key]), epoch)
        self._points_logged = len(points)


def tensorboard_hooks(log: str, run_dir: Path) -> list[TensorBoardLog]:
    """The hooks ``train.log`` asks for (none for ``"none"``); ConfigError, before anything is
    written, when the package it needs is missing."""
    if log != "tensorboard":
        return []
    check_tensorboard()
    return [TensorBoardLog(run_dir / TB_DIR)]
