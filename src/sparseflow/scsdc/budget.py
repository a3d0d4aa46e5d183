"""Spread one global weight budget over layers: uniform or Erdős–Rényi-Kernel densities.

Used by SC-SDC's ``total`` matching: the sparse net keeps as many active weights *in all* as its
dense twin has, but the per-layer split is a choice. Real-valued targets are turned into integer
counts that sum exactly to the budget, each in ``[1, layer size]``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

from sparseflow.errors import ConfigError

#: Valid values of ``distribution``.
DISTRIBUTIONS: tuple[str, ...] = ("uniform", "erk")


def _check_feasible(layers: int, budget: int, total: int) -> None:
    """ConfigError unless each layer can keep between 1 and all of its weights."""
    if not layers <= budget <= total:
        raise ConfigError(
            f"a budget of {budget:,} weights cannot keep between 1 and all weights of each of "
            f"{layers} layers ({total:,} weights in all)"
        )


def erk_densities(shapes: Mapping[str, Sequence[int]], budget: int) -> dict[str, float]:
    """Real-valued Erdős–Rényi-Kernel densities (Evci et al. 2020) keeping ``budget`` weights.

    A layer of shape ``(out, in, *kernel)`` gets density ``eps · Σdims / Πdims`` with one global
    ``eps`` chosen so that ``Σ density_l · numel_l == budget``. Layers whose density would exceed
    1 are made dense and ``eps`` is re-solved over the rest; repeat until no density exceeds 1.
    Making *all* offenders dense at once is safe: each one then takes fewer weights than its
    scaled share, so ``eps`` only grows and the other offenders would still exceed 1.
    """
    sizes = {n: math.prod(s) for n, s in shapes.items()}
    raw = {n: sum(s) / sizes[n] for n, s in shapes.items()}  # Σdims/Πdims, before scaling
    dense: set[str] = set()
    while True:
        left = budget - sum(sizes[n] for n in dense)  # weights for the non-dense layers
        denom = sum(raw[n] * sizes[n] for n in shapes if n not in dense)
        if denom == 0:  # every layer dense: budget == total
            return {n: 1.0 for n in shapes}
        eps = left / denom
        over = {n for n in shapes if n not in dense and eps * raw[n] > 1.0}
        if not over:
            return {n: 1.0 if n in dense else eps * raw[n] for n in shapes}
        dense |= over


def round_to_budget(targets: Mapping[str, float], sizes: Mapping[str, int],
                    budget: int) -> dict[str, int]:
    """Integer counts summing exactly to ``budget``, each in ``[1, sizes[n]]``, near ``targets``.

    Largest-remainder rounding: floor each target (clamped to ``[1, size]``), then hand the
    missing units one at a time to the layer furthest below its target that still has room,
    or take surplus units (created by the clamp to 1) from the layer furthest above its target
    that keeps ≥ 1. Ties go to the earlier layer, so the result is deterministic. At most
    ``len(targets)`` units move, so this is cheap however large the budget.
    """
    names = list(targets)
    _check_feasible(len(names), budget, sum(sizes[n] for n in names))
    counts = {n: min(max(math.floor(targets[n]), 1), sizes[n]) for n in names}
    diff = budget - sum(counts.values())
    while diff > 0:
        room = [n for n in names if counts[n] < sizes[n]]
        # max() returns the first maximal element: ties go to the earlier layer.
        n = max(room, key=lambda k: targets[k] - counts[k])
        counts[n] += 1
        diff -= 1
    while diff < 0:
        spare = [n for n in names if counts[n] > 1]
        n = min(spare, key=lambda k: targets[k] - counts[k])
        counts[n] -= 1
        diff += 1
    return counts


def distribute_budget(shapes: Mapping[str, Sequence[int]], budget: int,
                      distribution: str = "uniform") -> dict[str, int]:
    """Exact integer active counts per layer for one global ``budget`` of weights.

    ``shapes`` maps layer name → weight shape, in model order. ``uniform`` gives every layer
    the same density ``budget / Σ numel``; ``erk`` uses :func:`erk_densities`. Counts sum to
    ``budget`` exactly and each lies in ``[1, numel]`` (ConfigError if that is impossible,
    i.e. ``budget`` < number of layers or > total weights).
    """
    if distribution not in DISTRIBUTIONS:
        raise ConfigError(
            f"unknown distribution {distribution!r}; valid: {', '.join(DISTRIBUTIONS)}"
        )
    if not shapes:
        raise ConfigError("no prunable layers to spread the weight budget over")
    sizes = {n: math.prod(s) for n, s in shapes.items()}
    total = sum(sizes.values())
    _check_feasible(len(sizes), budget, total)  # before ERK, which assumes a feasible budget
    if distribution == "uniform":
        dens = dict.fromkeys(sizes, budget / total)
    else:
        dens = erk_densities(shapes, budget)
    return round_to_budget({n: dens[n] * sizes[n] for n in sizes}, sizes, budget)
