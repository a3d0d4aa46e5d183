"""sparseflow: study and improve how sparse neural networks train.

Importing the package registers every built-in component (datasets, models, activations,
inits, maskers, optimizers, schedules), so configs can validate names at construction.
"""

from __future__ import annotations

__version__ = "0.1.0"
