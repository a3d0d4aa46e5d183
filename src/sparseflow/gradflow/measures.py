"""Gradient-flow measures: the standard p-norms and Effective Gradient Flow (EGF).

Everything here is pure: :func:`gradient_flow` takes gradient tensors and bool masks and returns
Python floats; it never touches a model. :func:`gradients_of` is the one helper that reads a
model's ``.grad`` attributes into the ``name → tensor`` mapping that :func:`gradient_flow` takes.

Definitions (``L`` weight layers, ``g_l`` the raw gradient of layer ``l``, ``m_l`` its bool mask):

- ``gf1``, ``gf2``: ``||concat_l g_l||_p`` over the *raw* gradients, pruned positions included
  (the paper's standard measure).
- ``gf1_masked``, ``gf2_masked``: the same over ``g_l ⊙ m_l`` (Evci et al. 2020).
- ``egf1``, ``egf2``: ``(1/L) Σ_l ||g_l ⊙ m_l||_p`` (Tessera et al. 2021): every layer counts the
  same, whatever its size.
- ``egf1_per_weight``, ``egf2_per_weight``: ``(1/L) Σ_l ||g_l ⊙ m_l||_p / active_l``.
  **Decision**: a layer with 0 active weights contributes 0 to these averages (it still counts in
  ``L``), so a fully pruned layer never produces a division by zero or a NaN.

Masking is a *selection* (``torch.where(m, g, 0)``), not a product: ``g * m`` would turn an inf or
NaN raw gradient at a pruned position into NaN, leaking it into every masked value.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import torch
from torch import Tensor, nn

from sparseflow.prunable import prunable_parameters

#: The scalar keys of :func:`gradient_flow`'s result (``per_layer`` is the only other key).
MEASURES: tuple[str, ...] = (
    "gf1",
    "gf2",
    "gf1_masked",
    "gf2_masked",
    "egf1",
    "egf2",
    "egf1_per_weight",
    "egf2_per_weight",
)


def _check_mask(name: str, mask: object, grad: Tensor) -> Tensor:
    """The mask of layer ``name`` as a bool tensor on the gradient's device, or ValueError."""
    if not isinstance(mask, Tensor):
        raise ValueError(f"mask of layer {name!r} is {type(mask).__name__}, not a bool tensor")
    if mask.dtype != torch.bool:
        raise ValueError(
            f"mask of layer {name!r} has dtype {mask.dtype}, expected torch.bool "
            "(convert with mask.bool() if 1 means active)"
        )
    if tuple(mask.shape) != tuple(grad.shape):
        raise ValueError(
            f"mask of layer {name!r} has shape {tuple(mask.shape)} but its gradient has "
            f"{tuple(grad.shape)}"
        )
    return mask.to(grad.device)


def _layer_stats(name: str, grad: object, mask: object | None) -> Tensor:
    """float64 tensor ``[norm1_raw, sq2_raw, norm1, sq2, active, total]`` of one layer.

    ``sq2`` are sums of squares (the concatenated 2-norm is ``sqrt(Σ_l sq2_l)``). Kept as a
    tensor so that all layers are moved to the host in one transfer.
    """
    if not isinstance(grad, Tensor):
        raise ValueError(f"gradient of layer {name!r} is {type(grad).__name__}, not a tensor")
    # Per-layer float64 conversion: sums over millions of float32 values stay accurate and the
    # result barely depends on the input dtype; squares of float32 values cannot overflow.
    g = grad.detach().to(torch.float64)
    total = torch.tensor(float(g.numel()), dtype=torch.float64, device=g.device)
    norm1_raw, sq2_raw = g.abs().sum(), g.square().sum()
    if mask is None:  # dense layer: masked == raw
        return torch.stack([norm1_raw, sq2_raw, norm1_raw, sq2_raw, total, total])
    m = _check_mask(name, mask, g)
    gm = torch.where(m, g, 0.0)  # pruned positions are 0, whatever inf/NaN the raw value holds
    active = m.sum().to(torch.float64)
    return torch.stack([norm1_raw, sq2_raw, gm.abs().sum(), gm.square().sum(), active, total])


def gradient_flow(
    grads: Mapping[str, Tensor], masks: Mapping[str, Tensor] | None = None
) -> dict[str, Any]:
    """Standard gradient flow and Effective Gradient Flow of one set of layer gradients.

    Args:
        grads: layer name → raw gradient of that layer's prunable weight, in layer order
            (any float dtype, any device).
        masks: layer name → bool tensor of the same shape (True = active). ``None`` means dense;
            a layer absent from ``masks`` (or mapped to None) is dense.

    Returns:
        A dict with the float measures of :data:`MEASURES` (see the module docstring) and
        ``per_layer``: name → ``{norm1, norm2, norm1_raw, norm2_raw, active, total, density,
        norm1_per_weight, norm2_per_weight}`` (``norm*`` masked, ``norm*_raw`` unmasked;
        ``active``/``total`` are ints, everything else floats).

    Raises:
        ValueError: ``grads`` is empty, a gradient is not a tensor, or a mask names a layer not in
            ``grads``, has another shape than its gradient, or is not a bool tensor.
    """
    if not grads:
        raise ValueError("gradient_flow needs the gradient of at least one layer, got none")
    masks = {} if masks is None else masks
    unknown = [n for n in masks if n not in grads]
    if unknown:
        raise ValueError(f"mask layers {unknown} are not in grads; grads has {list(grads)}")

    names = list(grads)
    rows = [_layer_stats(n, grads[n], masks.get(n)) for n in names]
    # (L, 6) → host in one transfer (one device sync on GPU).
    table: list[list[float]] = torch.stack([r.to(rows[0].device) for r in rows]).cpu().tolist()

    per_layer: dict[str, dict[str, Any]] = {}
    for name, (n1_raw, sq2_raw, n1, sq2, active_f, total_f) in zip(names, table, strict=True):
        active, total = int(active_f), int(total_f)
        n2 = sq2**0.5
        per_layer[name] = {
            "norm1": n1,
            "norm2": n2,
            "norm1_raw": n1_raw,
            "norm2_raw": sq2_raw**0.5,
            "active": active,
            "total": total,
            "density": active / total if total else 1.0,
            # Decision: 0 active weights → 0 (not NaN), see the module docstring.
            "norm1_per_weight": n1 / active if active else 0.0,
            "norm2_per_weight": n2 / active if active else 0.0,
        }

    n_layers = len(names)
    layers = per_layer.values()
    return {
        "gf1": sum(row[0] for row in table),
        "gf2": sum(row[1] for row in table) ** 0.5,
        "gf1_masked": sum(row[2] for row in table),
        "gf2_masked": sum(row[3] for row in table) ** 0.5,
        "egf1": sum(v["norm1"] for v in layers) / n_layers,
        "egf2": sum(v["norm2"] for v in layers) / n_layers,
        "egf1_per_weight": sum(v["norm1_per_weight"] for v in layers) / n_layers,
        "egf2_per_weight": sum(v["norm2_per_weight"] for v in layers) / n_layers,
        "per_layer": per_layer,
    }


def trainable_parameters(model: nn.Module, include_all: bool = False) -> dict[str, nn.Parameter]:
    """Name → parameter whose gradient the measures use, in model order.

    By default the prunable weights (:func:`~sparseflow.sparsity.mask.prunable_parameters`);
    with ``include_all`` every parameter of the model (biases, normalization scales and shifts,
    PReLU slopes...) as well. Parameters with ``requires_grad=False`` (frozen layers) are left
    out: they are not trained, so they have no gradient flow.
    """
    prunable = prunable_parameters(model)
    params = prunable
    if include_all:
        params = dict(model.named_parameters())
        for name, p in prunable.items():  # a tied weight appears once in named_parameters
            params.setdefault(name, p)
    return {n: p for n, p in params.items() if p.requires_grad}


def drop_frozen(
    model: nn.Module, masks: Mapping[str, Tensor] | None
) -> Mapping[str, Tensor] | None:
    """``masks`` without the layers of ``model`` that are frozen (they have no gradient flow).

    Names that are not parameters of ``model`` are kept, so :func:`gradient_flow` still rejects
    them.
    """
    if masks is None:
        return None
    frozen = {n for n, p in prunable_parameters(model).items() if not p.requires_grad}
    return {n: m for n, m in masks.items() if n not in frozen} if frozen else masks


def gradients_of(
    model: nn.Module, names: Iterable[str] | None = None, include_all: bool = False
) -> dict[str, Tensor]:
    """Name → current ``.grad`` of the model's prunable weights (what :func:`gradient_flow` takes).

    Args:
        model: a model after ``loss.backward()``.
        names: return exactly these trainable parameters (in this order; biases and other
            non-prunable parameters may be named too), instead of the default selection.
        include_all: add every other trainable parameter that has a gradient (biases,
            normalization parameters); those without a ``.grad`` are skipped. Note that each of
            them then counts as a layer in the EGF means.

    Returns the live ``.grad`` tensors detached, not copies: clone them to keep them past the
    next ``zero_grad``. Frozen parameters (``requires_grad=False``) are never included.

    Raises:
        ValueError: a name is not a trainable parameter of ``model``, or a prunable weight (or a
            parameter named in ``names``) has no gradient (``.grad is None``: backward not run,
            or the layer is not used in the forward pass). EGF averages over every layer, so a
            silently missing layer would change its value.
    """
    params = trainable_parameters(model, include_all)
    prunable = prunable_parameters(model)
    if names is not None:
        names = list(names)
        valid = trainable_parameters(model, include_all=True)
        unknown = [n for n in names if n not in valid]
        if unknown:
            raise ValueError(
                f"{unknown} are not trainable parameters of the model; valid: {list(valid)}"
            )
        params = {n: valid[n] for n in names}
    required = set(prunable) if names is None else set(params)
    missing = [n for n, p in params.items() if p.grad is None and n in required]
    if missing:
        raise ValueError(
            f"layers {missing} have no gradient (.grad is None); call loss.backward() first, "
            "or freeze unused layers with requires_grad_(False)"
        )
    return {n: p.grad.detach() for n, p in params.items() if p.grad is not None}
