"""The monitor's cheap mode: per-layer L2 norms of the gradients, fused, left on the device.

``measures="cheap"`` records only :data:`CHEAP_MEASURES`. The raw norms come from one
``torch._foreach_norm`` over every layer's gradient (in its own dtype); the masked norms of
layers with a caller-given mask from a second one over the gathered active entries (their flat
indices cached per mask). Nothing is moved to the host until the values are read.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from sparseflow.gradflow.layers import Layer

#: The keys a ``measures="cheap"`` monitor records (per-layer masked L2 norms only).
CHEAP_MEASURES: tuple[str, ...] = ("gf2", "gf2_masked", "egf2")


class ActiveIndices:
    """Layer name → flat indices of its active weights, for the layers with a caller-given mask.

    Cached per mask tensor and recomputed when the mask changes in place (its version counter
    moves, as a dynamic-sparsity update bumps it) or is replaced by another tensor.
    """

    def __init__(self) -> None:
        self._cache: dict[str, tuple[tuple[int, Any], Tensor]] = {}

    def __call__(self, layers: list[Layer]) -> dict[str, Tensor]:
        out = {}
        for layer in layers:
            if layer.mask_source != "mask":
                continue  # dense, or a prune/parametrization mask already in the gradient
            m = layer.mask()
            assert m is not None  # a "mask" layer always has one
            key = (id(m), getattr(m, "_version", None))
            cached = self._cache.get(layer.name)
            if cached is None or cached[0] != key:
                cached = (key, m.reshape(-1).nonzero().squeeze(1))
                self._cache[layer.name] = cached
            out[layer.name] = cached[1]
        return out


def cheap_norms(layers: list[Layer], grads: list[Tensor], active: dict[str, Tensor]) -> Tensor:
    """(2, L) tensor [raw L2 norms; masked L2 norms] in the gradients' dtype, on their device.

    One fused ``torch._foreach_norm`` over all raw gradients; for layers with a caller-given
    mask, a second one over the gathered active entries (``active``: layer name → flat indices,
    cheaper than masking the whole gradient at low density). A ``torch.nn.utils.prune`` /
    parametrization mask multiplies the weight in the forward pass, so its gradient is already 0
    at pruned positions: its masked norm is its raw norm.
    """
    raw = torch._foreach_norm(grads)
    masked = list(raw)
    user = [i for i, layer in enumerate(layers) if layer.name in active]
    if user:
        picked = [grads[i].reshape(-1).index_select(0, active[layers[i].name]) for i in user]
        for i, norm in zip(user, torch._foreach_norm(picked), strict=True):
            masked[i] = norm
    device = raw[0].device
    return torch.stack([torch.stack([r.to(device) for r in raw]),
                        torch.stack([m.to(device) for m in masked])])  # fmt: skip


def cheap_record(number: int, raw: list[float], masked: list[float]) -> dict[str, float]:
    """The :data:`CHEAP_MEASURES` record of one step from its (unscaled) per-layer norms."""
    return {
        "step": number,
        "gf2": sum(v * v for v in raw) ** 0.5,
        "gf2_masked": sum(v * v for v in masked) ** 0.5,
        "egf2": sum(masked) / len(masked),
    }
