"""The training loop, its hooks, and the run directory lifecycle."""

from sparseflow.train.build import Built, build_mask, build_run
from sparseflow.train.callbacks import EarlyStopping, EpochCallback, LRSchedule
from sparseflow.train.hooks import Hook
from sparseflow.train.loop import evaluate, fit, train_epoch
from sparseflow.train.run import RunResult, is_finished, read_summary, run_dir_for, run_experiment
from sparseflow.train.seeding import make_generators, stream_seed
from sparseflow.train.state import TrainState

__all__ = [
    "Built",
    "EarlyStopping",
    "EpochCallback",
    "Hook",
    "LRSchedule",
    "RunResult",
    "TrainState",
    "build_mask",
    "build_run",
    "evaluate",
    "fit",
    "is_finished",
    "make_generators",
    "read_summary",
    "run_dir_for",
    "run_experiment",
    "stream_seed",
    "train_epoch",
]
