"""Gradient flow of (sparse) networks: standard p-norms and Effective Gradient Flow (EGF).

- :func:`gradient_flow`: pure measures of a ``name → gradient`` mapping and bool masks.
- :func:`gradients_of`: read a model's ``.grad`` into that mapping.
- :func:`measure_gradient_flow`: measure on a probe batch without perturbing training.
- :class:`GradientFlowMonitor`: record the measures inside your own training loop.
- :func:`discover_layers`: which weights of any model the monitor measures (and their masks).
"""

from __future__ import annotations

from sparseflow.gradflow.layers import Layer, NoLayersError, discover_layers
from sparseflow.gradflow.measures import MEASURES, gradient_flow, gradients_of
from sparseflow.gradflow.monitor import (
    CHEAP_MEASURES,
    GradientFlowMonitor,
    TensorBoardUnavailableError,
)
from sparseflow.gradflow.probe import measure_gradient_flow

__all__ = [
    "CHEAP_MEASURES",
    "MEASURES",
    "GradientFlowMonitor",
    "Layer",
    "NoLayersError",
    "TensorBoardUnavailableError",
    "discover_layers",
    "gradient_flow",
    "gradients_of",
    "measure_gradient_flow",
]
