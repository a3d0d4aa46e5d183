"""Gradient flow in other people's training loops: one optional module per framework.

- :mod:`sparseflow.integrations.lightning`: a Lightning ``Callback``
  (``pip install 'sparseflow[lightning]'``).
- :mod:`sparseflow.integrations.huggingface`: a Hugging Face ``TrainerCallback``
  (``pip install 'sparseflow[hf]'``).

Importing this package imports no framework; each module imports its own when imported, and
raises :class:`IntegrationUnavailableError` (an ImportError) naming the install command when
the framework is missing. Both pass their keyword arguments through to
:class:`~sparseflow.gradflow.GradientFlowMonitor`.
"""

from __future__ import annotations

from sparseflow.errors import SparseflowError


class IntegrationUnavailableError(SparseflowError, ImportError):
    """An integration module was imported but its framework is not installed."""


def missing(framework: str, extra: str) -> IntegrationUnavailableError:
    """The error for a missing ``framework``, naming the extra that installs it."""
    return IntegrationUnavailableError(
        f"sparseflow.integrations needs {framework}, which is not installed: "
        f"pip install 'sparseflow[{extra}]'"
    )


__all__ = ["IntegrationUnavailableError", "missing"]
