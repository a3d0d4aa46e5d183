"""Choosing a mask from scores under SC-SDC budgets, and the layer-collapse rule.

- per-layer counts (``matching: per_layer`` or any distribution but ``global``): the scores
  choose *which* weights inside each layer's exact count (top-k per layer);
- ``distribution: global``: one top-``budget`` over all layers (but a ``dense_first_layer``), so
  the scores choose the layer-wise densities too. A layer left with no active weight is a
  *layer collapse*: :func:`check_collapse` stops (``sparsity.pai.collapse: error``) or warns.

Ties go to the lower flat index inside a layer and to the earlier layer across layers (the
scores are concatenated in model order), so a mask does not depend on the sort implementation.
Selection runs on CPU in float64.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from dataclasses import dataclass

import torch
from torch import Tensor

from sparseflow.errors import ConfigError
from sparseflow.sparsity.mask import Mask


@dataclass(frozen=True)
class Budget:
    """What a mask must keep: exact per-layer ``counts``, or (``global``) only a ``total``.

    ``sizes`` maps every masked layer to its weight count, in model order. Under a global
    budget (``counts`` None) the masker ranks all layers but those in ``dense`` together and
    keeps ``total − Σ dense sizes`` of them; the ``dense`` layers keep every weight.
    """

    sizes: Mapping[str, int]
    total: int
    counts: Mapping[str, int] | None = None
    dense: tuple[str, ...] = ()

    @property
    def is_global(self) -> bool:
        """True when the masker chooses the layer-wise densities (distribution=global)."""
        return self.counts is None

    @property
    def ranked(self) -> list[str]:
        """The layers a global selection ranks together (all but ``dense``), in model order."""
        return [n for n in self.sizes if n not in self.dense]

    @property
    def ranked_total(self) -> int:
        """How many weights a global selection keeps among :attr:`ranked`."""
        return self.total - sum(self.sizes[n] for n in self.dense)

    @classmethod
    def per_layer(cls, sizes: Mapping[str, int], counts: Mapping[str, int]) -> Budget:
        """A budget of exact per-layer counts."""
        return cls(sizes=dict(sizes), total=sum(counts.values()), counts=dict(counts))


def keep_top(scores: Tensor, k: int) -> Tensor:
    """Bool tensor (shape of ``scores``) with True at the k largest scores; ties by index."""
    flat = scores.reshape(-1)
    # A stable sort: ties are broken by lower index, whatever the sort implementation.
    order = torch.sort(flat, descending=True, stable=True).indices[:k]
    keep = torch.zeros(flat.numel(), dtype=torch.bool)
    keep[order] = True
    return keep.reshape(scores.shape)


def select(scores: Mapping[str, Tensor], budget: Budget,
           counts: Mapping[str, int] | None = None, total: int | None = None) -> Mask:
    """The mask keeping the highest ``scores`` under ``budget`` (on CPU).

    Per-layer budgets keep ``counts`` (default ``budget.counts``) per layer; a global budget
    keeps ``total`` (default ``budget.ranked_total``) over the ranked layers, its dense layers
    whole. ``counts``/``total`` let an iterative method (synflow) prune in rounds.
    """
    cpu = {n: scores[n].detach().to("cpu", torch.float64) for n in budget.sizes}
    if not budget.is_global:
        use = counts if counts is not None else budget.counts
        assert use is not None
        return Mask({n: keep_top(cpu[n], int(use[n])) for n in cpu})
    k = budget.ranked_total if total is None else total
    ranked = budget.ranked
    keep = keep_top(torch.cat([cpu[n].reshape(-1) for n in ranked]), k) if ranked else None
    out: dict[str, Tensor] = {}
    start = 0
    for n, s in cpu.items():
        if n in budget.dense:
            out[n] = torch.ones_like(s, dtype=torch.bool)
            continue
        assert keep is not None
        out[n] = keep[start:start + s.numel()].reshape(s.shape)
        start += s.numel()
    return Mask(out)


def collapsed_layers(mask: Mask) -> list[str]:
    """The layers of ``mask`` with no active weight (layer collapse), in model order."""
    return [n for n in mask if mask.active(n) == 0]


def check_collapse(mask: Mask, collapse: str, masker: str) -> list[str]:
    """Apply the ``sparsity.pai.collapse`` rule to ``mask``; returns the collapsed layers.

    ``error``: ConfigError naming the layers and the fixes; ``warn``: a RuntimeWarning (the
    run's summary records ``collapsed_layers``). Never silent.
    """
    dead = collapsed_layers(mask)
    if not dead:
        return dead
    names = ", ".join(map(repr, dead))
    if collapse == "error":
        raise ConfigError(
            f"layer collapse: masker {masker!r} left no active weight in {names}; raise the "
            "density, use a per-layer split (sparsity.distribution uniform, er or erk), or set "
            "sparsity.pai.collapse: warn to train anyway"
        )
    warnings.warn(f"layer collapse: masker {masker!r} left no active weight in {names}; "
                  "training anyway (sparsity.pai.collapse: warn)", RuntimeWarning, stacklevel=2)
    return dead
