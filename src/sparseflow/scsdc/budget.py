"""Spread one global weight budget over layers: uniform, Erdős–Rényi or ER-Kernel densities.

Used by SC-SDC's ``total`` matching (the sparse net keeps as many active weights *in all* as its
dense twin has) and by one global ``sparsity.density`` with a non-uniform distribution: the
per-layer split is a choice. Real-valued targets are turned into integer counts that sum exactly
to the budget, each in ``[1, layer size]`` (largest-remainder rounding, :func:`round_to_budget`).
``global`` fixes no split: the masker's scores rank all layers together (:class:`Budget`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence

from sparseflow.errors import ConfigError
from sparseflow.sparsity.selection import Budget

#: Valid values of ``distribution``.
DISTRIBUTIONS: tuple[str, ...] = ("uniform", "er", "erk", "global")


def _check_feasible(layers: int, budget: int, total: int) -> None:
    """ConfigError unless each layer can keep between 1 and all of its weights."""
    if not layers <= budget <= total:
        raise ConfigError(
            f"a budget of {budget:,} weights cannot keep between 1 and all weights of each of "
            f"{layers} layers ({total:,} weights in all)"
        )


def erk_raw(shape: Sequence[int]) -> float:
    """ERK's unscaled density of a layer: ``Σ dims / Π dims`` over every dim (kernel too)."""
    return sum(shape) / math.prod(shape)


def er_raw(shape: Sequence[int]) -> float:
    """ER's unscaled density: ``(n_in + n_out) / (n_in · n_out)``, fan-in/out only.

    A weight is ``(out, in, *kernel)``: n_out = ``shape[0]``, n_in = ``shape[1]`` (channels for a
    conv, the kernel ignored), as rigl's ``erdos_renyi`` reads the last two dims of a TF kernel
    ``(*kernel, in, out)``. For a Linear layer ER and ERK agree.
    """
    n_out, n_in = shape[0], shape[1]
    return (n_in + n_out) / (n_in * n_out)


def scaled_densities(shapes: Mapping[str, Sequence[int]], budget: int,
                     raw_of: Callable[[Sequence[int]], float]) -> dict[str, float]:
    """Densities ``eps · raw_of(shape)`` with one ``eps`` so that ``Σ density · numel == budget``.

    Layers whose density would exceed 1 are made dense and ``eps`` is re-solved over the rest
    (rigl's ``get_sparsities_erdos_renyi``); repeat until no density exceeds 1. rigl makes the
    layers of the largest raw density dense one at a time; making *all* offenders dense at once
    ends at the same set: each one then takes fewer weights than its scaled share, so ``eps``
    only grows and the other offenders would still exceed 1.
    """
    sizes = {n: math.prod(s) for n, s in shapes.items()}
    raw = {n: raw_of(s) for n, s in shapes.items()}
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


def erk_densities(shapes: Mapping[str, Sequence[int]], budget: int) -> dict[str, float]:
    """Real-valued Erdős–Rényi-Kernel densities (Evci et al. 2020) keeping ``budget`` weights.

    A layer of shape ``(out, in, *kernel)`` gets density ``eps · Σdims / Πdims``; layers that
    would exceed 1 are dense (see :func:`scaled_densities`).
    """
    return scaled_densities(shapes, budget, erk_raw)


def er_densities(shapes: Mapping[str, Sequence[int]], budget: int) -> dict[str, float]:
    """Real-valued Erdős–Rényi densities (Mocanu et al. 2018): ``eps · (n_in + n_out) /
    (n_in · n_out)`` per layer (:func:`er_raw`), saturating layers dense like ERK."""
    return scaled_densities(shapes, budget, er_raw)


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


def _split(shapes: Mapping[str, Sequence[int]], budget: int, distribution: str
           ) -> dict[str, int]:
    """Counts of a fixed split (uniform, er, erk) over ``shapes``, summing to ``budget``."""
    sizes = {n: math.prod(s) for n, s in shapes.items()}
    total = sum(sizes.values())
    _check_feasible(len(sizes), budget, total)  # before ER(K), which assumes a feasible budget
    if distribution == "uniform":
        dens = dict.fromkeys(sizes, budget / total)
    elif distribution == "er":
        dens = er_densities(shapes, budget)
    else:
        dens = erk_densities(shapes, budget)
    return round_to_budget({n: dens[n] * sizes[n] for n in sizes}, sizes, budget)


def _check_distribution(distribution: str) -> None:
    if distribution not in DISTRIBUTIONS:
        raise ConfigError(
            f"unknown distribution {distribution!r}; valid: {', '.join(DISTRIBUTIONS)}"
        )


def _first_dense(shapes: Mapping[str, Sequence[int]], budget: int) -> str:
    """The first layer's name, after checking that keeping it whole fits in ``budget``."""
    names = list(shapes)
    if len(names) < 2:
        raise ConfigError("sparsity.dense_first_layer needs at least two prunable layers; "
                          "set it to false")
    first = math.prod(shapes[names[0]])
    if budget < first:
        raise ConfigError(
            f"sparsity.dense_first_layer keeps all {first:,} weights of layer {names[0]!r}, "
            f"more than the budget of {budget:,}; raise the density or set it to false"
        )
    return names[0]


def distribute_budget(shapes: Mapping[str, Sequence[int]], budget: int,
                      distribution: str = "uniform",
                      dense_first_layer: bool = False) -> dict[str, int]:
    """Exact integer active counts per layer for one global ``budget`` of weights.

    ``shapes`` maps layer name → weight shape, in model order. ``uniform`` gives every layer
    the same density ``budget / Σ numel``; ``er`` / ``erk`` use :func:`er_densities` /
    :func:`erk_densities`. With ``dense_first_layer`` the first layer keeps all its weights and
    the others share ``budget − its size`` by ``distribution``. Counts sum to ``budget`` exactly
    and each lies in ``[1, numel]`` (ConfigError if that is impossible, i.e. ``budget`` <
    number of layers or > total weights). ``global`` has no fixed split (see :func:`plan_budget`).
    """
    _check_distribution(distribution)
    if distribution == "global":
        raise ConfigError("distribution 'global' leaves the per-layer split to the masker's "
                          "scores; there are no fixed counts (use plan_budget)")
    if not shapes:
        raise ConfigError("no prunable layers to spread the weight budget over")
    if not dense_first_layer:
        return _split(shapes, budget, distribution)
    first = _first_dense(shapes, budget)
    rest = {n: s for n, s in shapes.items() if n != first}
    size = math.prod(shapes[first])
    return {first: size, **_split(rest, budget - size, distribution)}


def plan_budget(shapes: Mapping[str, Sequence[int]], budget: int, distribution: str = "uniform",
                dense_first_layer: bool = False) -> Budget:
    """The :class:`Budget` of ``budget`` weights spread by ``distribution`` over ``shapes``.

    A fixed split (uniform, er, erk) gives exact counts (:func:`distribute_budget`); ``global``
    gives only the total (0 ≤ budget ≤ Σ numel), with the first layer in ``dense`` when
    ``dense_first_layer``.
    """
    _check_distribution(distribution)
    sizes = {n: math.prod(s) for n, s in shapes.items()}
    if distribution != "global":
        return Budget.per_layer(sizes, distribute_budget(shapes, budget, distribution,
                                                         dense_first_layer))
    if not shapes:
        raise ConfigError("no prunable layers to spread the weight budget over")
    if not 1 <= budget <= sum(sizes.values()):
        raise ConfigError(f"a global budget of {budget:,} weights must lie between 1 and the "
                          f"{sum(sizes.values()):,} prunable weights")
    dense = (_first_dense(shapes, budget),) if dense_first_layer else ()
    return Budget(sizes=sizes, total=budget, dense=dense)
