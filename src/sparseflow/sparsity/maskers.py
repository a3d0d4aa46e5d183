"""Maskers: functions that draw a :class:`Mask` for a model with exact per-layer counts.

Every masker has the signature ``masker(params, counts, generator) -> Mask`` where ``params``
maps prunable weight names to tensors (the model's initial weights) and ``counts`` maps each
name to the exact number of weights to keep. Layer-wise maskers honour ``counts`` exactly;
``global_magnitude`` honours only their sum (one global budget), which is its point. Under
``distribution: global`` (:func:`draw_budget_mask`) random draws uniformly over all ranked
weights and magnitude ranks |w| over all of them. Score-based maskers (snip, grasp, synflow)
take a :class:`~sparseflow.sparsity.scoring.ScoreContext` instead (``kind="score"``).
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor

from sparseflow.errors import ConfigError
from sparseflow.registry import MASKERS
from sparseflow.sparsity.mask import Mask
from sparseflow.sparsity.selection import Budget, keep_top, select

# One top-k for every masker: ties by lower index (see selection.keep_top).
_keep_top = keep_top


@MASKERS.register("random")
def random_masker(params: Mapping[str, Tensor], counts: Mapping[str, int],
                  generator: torch.Generator) -> Mask:
    """Uniformly random mask with exactly the requested count per layer (pruning at init)."""
    out = {}
    for name, w in params.items():
        perm = torch.randperm(w.numel(), generator=generator)
        keep = torch.zeros(w.numel(), dtype=torch.bool)
        keep[perm[: counts[name]]] = True
        out[name] = keep.reshape(w.shape)
    return Mask(out)


@MASKERS.register("magnitude")
def magnitude_masker(params: Mapping[str, Tensor], counts: Mapping[str, int],
                     generator: torch.Generator) -> Mask:
    """Layer-wise magnitude pruning: keep each layer's largest |w|, exact count per layer."""
    return Mask({n: _keep_top(w.detach().abs().cpu(), counts[n]) for n, w in params.items()})


@MASKERS.register("global_magnitude")
def global_magnitude_masker(params: Mapping[str, Tensor], counts: Mapping[str, int],
                            generator: torch.Generator) -> Mask:
    """Global magnitude pruning: keep the largest |w| over all layers (total count exact)."""
    names = list(params)
    flat = torch.cat([params[n].detach().abs().cpu().reshape(-1) for n in names])
    keep = _keep_top(flat, sum(counts[n] for n in names))
    out, start = {}, 0
    for n in names:
        size = params[n].numel()
        out[n] = keep[start:start + size].reshape(params[n].shape)
        start += size
    return Mask(out)


def layer_counts(params: Mapping[str, Tensor], density: float = 1.0,
                 layer_densities: Mapping[str, float] | None = None,
                 layer_counts: Mapping[str, int] | None = None) -> dict[str, int]:
    """Exact active count per layer from one density, per-layer densities or explicit counts.

    A density d keeps ``round(d · numel)`` weights, at least 1. Unknown layer names and counts
    larger than the layer raise ConfigError naming the layer.
    """
    for given in (layer_densities or {}), (layer_counts or {}):
        for name in given:
            if name not in params:
                raise ConfigError(
                    f"sparsity names layer {name!r}, which the model lacks; its prunable "
                    f"weights are: {', '.join(params)}"
                )
    counts = {}
    for name, w in params.items():
        if layer_counts and name in layer_counts:
            c = int(layer_counts[name])
        else:
            d = (layer_densities or {}).get(name, density)
            c = max(1, round(d * w.numel()))
        if c > w.numel():
            raise ConfigError(
                f"layer {name!r} has {w.numel()} weights but {c} were asked to stay active"
            )
        counts[name] = c
    return counts


def draw_mask(masker: str, params: Mapping[str, Tensor], counts: Mapping[str, int],
              generator: torch.Generator) -> Mask:
    """Look up ``masker`` by name and draw a mask with the given per-layer counts."""
    return MASKERS.get(masker)(params, counts, generator)


def _global_random(params: Mapping[str, Tensor], budget: Budget,
                   generator: torch.Generator) -> Mask:
    """Uniformly random over all ranked weights together: ``budget.ranked_total`` of them."""
    ranked = budget.ranked
    perm = torch.randperm(sum(params[n].numel() for n in ranked), generator=generator)
    scores = torch.zeros(perm.numel(), dtype=torch.float64)
    scores[perm[: budget.ranked_total]] = 1.0  # the kept positions score 1, the rest 0
    out, start = {}, 0
    for n in budget.sizes:
        if n in budget.dense:
            out[n] = torch.ones(params[n].shape, dtype=torch.float64)
            continue
        size = params[n].numel()
        out[n] = scores[start:start + size].reshape(params[n].shape)
        start += size
    return select(out, budget)


def draw_budget_mask(masker: str, params: Mapping[str, Tensor], budget: Budget,
                     generator: torch.Generator) -> Mask:
    """A static masker's mask under ``budget``: its per-layer counts, or one global total.

    Per-layer budgets call the masker with the counts (:func:`draw_mask`). A global budget has
    no counts: ``random`` draws uniformly over all ranked weights, ``magnitude`` and
    ``global_magnitude`` keep the largest |w| over them; other maskers cannot choose layer
    densities (ConfigError).
    """
    if not budget.is_global:
        assert budget.counts is not None
        return draw_mask(masker, params, budget.counts, generator)
    if masker == "random":
        return _global_random(params, budget, generator)
    if masker in ("magnitude", "global_magnitude"):
        return select({n: params[n].detach().abs().cpu() for n in budget.sizes}, budget)
    raise ConfigError(f"masker {masker!r} keeps per-layer counts and cannot choose the layer "
                      "densities of distribution=global; use sparsity.distribution uniform, er "
                      "or erk, or a masker that ranks all layers (random, magnitude, snip, "
                      "grasp, synflow)")
