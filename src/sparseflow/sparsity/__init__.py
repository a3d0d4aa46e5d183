"""Masks, maskers and the enforcement of masks during training."""

from sparseflow.sparsity.enforce import MaskEnforcer
from sparseflow.sparsity.mask import PRUNABLE_TYPES, Mask, prunable_parameters
from sparseflow.sparsity.maskers import draw_mask, layer_counts

__all__ = [
    "PRUNABLE_TYPES",
    "Mask",
    "MaskEnforcer",
    "draw_mask",
    "layer_counts",
    "prunable_parameters",
]

# Registers the dynamic maskers (set, rigl) next to the static ones.
from sparseflow.sparsity import dst  # noqa: E402,F401
