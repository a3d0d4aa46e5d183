"""Mixed precision: measuring the unscaled gradients of a ``torch.amp.GradScaler`` loop.

The monitor measures the gradients as ``.grad`` holds them and divides every norm by the scale
(norms are linear in the gradient), so ``.grad`` is never touched. If ``scaler.unscale_(opt)``
already ran this step, the gradients are unscaled already: :func:`already_unscaled` sees it in
the scaler's per-optimizer state, and the monitor does not divide a second time.
"""

from __future__ import annotations

from typing import Any

from sparseflow.gradflow.measures import MEASURES

#: Norm-valued keys of :func:`gradient_flow`'s per-layer dict (all scale with the gradient).
LAYER_NORMS = ("norm1", "norm2", "norm1_raw", "norm2_raw", "norm1_per_weight", "norm2_per_weight")


def already_unscaled(scaler: Any) -> bool:
    """True if ``scaler.unscale_(opt)`` ran for some optimizer since the last ``update()``."""
    try:
        from torch.amp.grad_scaler import OptState
    except ImportError:  # pragma: no cover - older torch
        return False
    states = getattr(scaler, "_per_optimizer_states", {})
    return any(s.get("stage") is OptState.UNSCALED for s in states.values())


def divide_norms(result: dict[str, Any], scale: float) -> None:
    """Divide every norm of a :func:`gradient_flow` result by ``scale`` in place (unscaling)."""
    for key in MEASURES:
        result[key] /= scale
    for values in result["per_layer"].values():
        for key in LAYER_NORMS:
            values[key] /= scale
