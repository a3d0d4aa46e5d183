"""Masks, maskers and the enforcement of masks during training.

Pruning at initialization: :mod:`~sparseflow.sparsity.scoring` (the score maskers' protocol),
:mod:`~sparseflow.sparsity.selection` (budgets, top-k, layer collapse) and the maskers
``snip``, ``grasp`` and ``synflow`` (one module each).
"""

from sparseflow.sparsity.enforce import MaskEnforcer
from sparseflow.sparsity.mask import PRUNABLE_TYPES, Mask, prunable_parameters
from sparseflow.sparsity.maskers import draw_budget_mask, draw_mask, layer_counts
from sparseflow.sparsity.scoring import ScoreContext
from sparseflow.sparsity.selection import Budget, check_collapse, select

# isort: split
# After the static maskers, so `sparseflow list maskers` shows random and magnitude first.
from sparseflow.sparsity import pai_grasp, pai_snip, pai_synflow  # noqa: F401,E402  (registers)

__all__ = [
    "PRUNABLE_TYPES",
    "Budget",
    "Mask",
    "MaskEnforcer",
    "ScoreContext",
    "check_collapse",
    "draw_budget_mask",
    "draw_mask",
    "layer_counts",
    "prunable_parameters",
    "select",
]

# Registers the dynamic maskers (set, rigl) next to the static ones.
from sparseflow.sparsity import dst  # noqa: E402,F401
