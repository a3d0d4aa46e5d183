"""sparseflow: study and improve how sparse neural networks train.

Importing the package registers every built-in component (datasets, models, activations,
inits, maskers, optimizers, schedules), so configs validate names at construction.
"""

from __future__ import annotations

from sparseflow._portable import apply_portable_env

apply_portable_env()  # before any tensor operation reads the CPU code-path variables

from sparseflow import components as _components  # noqa: E402,F401  (fills the registries)
from sparseflow._version import __version__  # noqa: E402
from sparseflow.gradflow import GradientFlowMonitor, gradient_flow  # noqa: E402
from sparseflow.sparsity import Mask  # noqa: E402

__all__ = ["GradientFlowMonitor", "Mask", "__version__", "gradient_flow"]
