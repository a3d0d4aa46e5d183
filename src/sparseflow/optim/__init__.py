"""Optimizers, explicit regularizers and learning-rate schedules."""

from sparseflow.optim.optimizers import build_optimizer
from sparseflow.optim.regularizers import CoupledL2, DecoupledWeightDecay, decay_targets
from sparseflow.optim.schedules import lr_factor

__all__ = ["CoupledL2", "DecoupledWeightDecay", "build_optimizer", "decay_targets", "lr_factor"]
