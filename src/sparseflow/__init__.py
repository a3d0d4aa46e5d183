"""sparseflow: study and improve how sparse neural networks train."""

from __future__ import annotations

__version__ = "0.1.0"
