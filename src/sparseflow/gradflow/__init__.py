"""Gradient flow of (sparse) networks: standard p-norms and Effective Gradient Flow (EGF).

- :func:`gradient_flow`: pure measures of a ``name → gradient`` mapping and bool masks.
- :func:`gradients_of`: read a model's ``.grad`` into that mapping.
- :func:`measure_gradient_flow`: measure on a probe batch without perturbing training.
- :class:`GradientFlowMonitor`: record the measures inside your own training loop.
"""

from __future__ import annotations

from sparseflow.gradflow.measures import MEASURES, gradient_flow, gradients_of
from sparseflow.gradflow.monitor import GradientFlowMonitor, TensorBoardUnavailableError
from sparseflow.gradflow.probe import measure_gradient_flow

__all__ = [
    "MEASURES",
    "GradientFlowMonitor",
    "TensorBoardUnavailableError",
    "gradient_flow",
    "gradients_of",
    "measure_gradient_flow",
]
