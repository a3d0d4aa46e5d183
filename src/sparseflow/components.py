"""Importing this module registers every built-in component in its registry."""

from sparseflow import data, models, optim, sparsity  # noqa: F401
