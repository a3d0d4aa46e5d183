"""SC-SDC pairing: how many weights each layer of a wide sparse net keeps, and the pair table.

A sparse net S (width W_S) and its dense twin D (width W_D ≤ W_S) come from one model family, so
their prunable weights have the same names (the MLP names layers by position, not width). The
paper matches capacity *per layer*: ``||θ_S^l ⊙ m^l||_0 = ||θ_D^l||_0``. For an MLP with input d
and c classes that is d·W_D of d·W_S weights in layer 1, W_D² of W_S² in a hidden layer and
W_D·c of W_S·c in the output layer. ``total`` matching keeps only the sum equal.

Both models may live on the ``meta`` device: only shapes are read here.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from types import MappingProxyType
from typing import Any

from torch import nn

from sparseflow.errors import ConfigError
from sparseflow.models.activations import PARAMETRIC_ACTIVATIONS
from sparseflow.models.build import NORM_TYPES
from sparseflow.prunable import PRUNABLE_TYPES, prunable_parameters
from sparseflow.scsdc.budget import distribute_budget

#: Valid values of ``matching``.
MATCHINGS: tuple[str, ...] = ("per_layer", "total")


def _paired_shapes(sparse: nn.Module, dense: nn.Module
                   ) -> tuple[dict[str, tuple[int, ...]], dict[str, tuple[int, ...]]]:
    """(sparse shapes, dense shapes) of the prunable weights, checked to pair up by name.

    ConfigError if a layer is in one model only, or if a same-named pair differs in rank
    (e.g. a Linear paired with a Conv2d). Order is the sparse model's.
    """
    sp = {n: tuple(p.shape) for n, p in prunable_parameters(sparse).items()}
    dp = {n: tuple(p.shape) for n, p in prunable_parameters(dense).items()}
    only_s = [n for n in sp if n not in dp]
    only_d = [n for n in dp if n not in sp]
    if only_s or only_d:
        parts = []
        if only_s:
            parts.append(f"only in the sparse model: {', '.join(map(repr, only_s))}")
        if only_d:
            parts.append(f"only in the dense model: {', '.join(map(repr, only_d))}")
        raise ConfigError(
            "the sparse and dense models must have the same prunable layers (same family, "
            f"same depth); {'; '.join(parts)}"
        )
    for n in sp:
        if len(sp[n]) != len(dp[n]):
            raise ConfigError(
                f"layer {n!r} has shape {sp[n]} in the sparse model but {dp[n]} in the dense "
                "model: the layers are of different kinds"
            )
    return sp, dp


def same_capacity_counts(sparse: nn.Module, dense: nn.Module, matching: str = "per_layer",
                         distribution: str = "uniform") -> dict[str, int]:
    """Exact active-weight count per prunable layer of ``sparse`` so S matches D's capacity.

    - ``per_layer`` (the paper): each layer keeps exactly the same-named dense layer's weight
      count; ``distribution`` is ignored.
    - ``total``: one budget, the dense model's total prunable weights, spread over S's layers
      by ``distribution`` (``uniform`` density or ``erk``), rounded so the counts sum exactly
      to the budget with each in ``[1, layer size]`` (see :func:`distribute_budget`).

    In both modes a dense layer larger than its sparse counterpart raises ConfigError naming
    the first such layer (in model order) and both sizes: the dense twin is the *narrower*
    network. Layers present in one model only raise ConfigError naming them.
    """
    if matching not in MATCHINGS:
        raise ConfigError(f"unknown matching {matching!r}; valid: {', '.join(MATCHINGS)}")
    sp, dp = _paired_shapes(sparse, dense)
    for n in sp:
        ns, nd = math.prod(sp[n]), math.prod(dp[n])
        if nd > ns:
            raise ConfigError(
                f"dense layer {n!r} has {nd:,} weights but its sparse counterpart only {ns:,}: "
                "the dense width must not exceed the sparse width"
            )
    if matching == "per_layer":
        return {n: math.prod(dp[n]) for n in sp}
    budget = sum(math.prod(s) for s in dp.values())
    return distribute_budget(sp, budget, distribution)


@dataclass(frozen=True)
class LayerPair:
    """One prunable layer of an SC-SDC pair: S's shape and active count vs D's weight count."""

    name: str
    sparse_shape: tuple[int, ...]
    dense_shape: tuple[int, ...]
    sparse_total: int  # weights of S's layer, active or not
    active: int  # active weights of S's layer
    density: float  # active / sparse_total
    dense_count: int  # weights of D's layer (all active)
    init_std: float | None = None  # std of S's active weights at init, if known

    @property
    def matched(self) -> bool:
        """True when S keeps exactly as many weights as D has in this layer."""
        return self.active == self.dense_count


@dataclass(frozen=True)
class PairTable:
    """Per-layer and total capacity of an SC-SDC pair, plus the parameters left unmatched.

    ``non_pruned`` maps a kind (``bias``, ``norm``, ``activation``, ``other``) to
    ``{"sparse": n_S, "dense": n_D, "difference": n_S - n_D}``: these parameters scale with
    width and are not pruned, so the wider S has more of them than D. ``all`` sums the kinds.
    """

    layers: tuple[LayerPair, ...]
    sparse_active: int  # Σ active weights of S's prunable layers
    sparse_total: int  # Σ weights of S's prunable layers
    dense_weights: int  # Σ weights of D's prunable layers
    non_pruned: Mapping[str, Mapping[str, int]]

    @property
    def matched(self) -> bool:
        """True when S's active weights equal D's weights in total."""
        return self.sparse_active == self.dense_weights

    def to_dict(self) -> dict[str, Any]:
        """JSON-able dict: ``layers`` (list), ``totals`` and ``non_pruned``."""
        layers = []
        for lp in self.layers:
            row = asdict(lp)
            row["sparse_shape"], row["dense_shape"] = list(lp.sparse_shape), list(lp.dense_shape)
            layers.append(row)
        totals = {"sparse_active": self.sparse_active, "sparse_total": self.sparse_total,
                  "dense_weights": self.dense_weights,
                  "density": self.sparse_active / self.sparse_total if self.sparse_total else 1.0,
                  "matched": self.matched}
        return {"layers": layers, "totals": totals,
                "non_pruned": {k: dict(v) for k, v in self.non_pruned.items()}}

    def rows(self, include_total: bool = True) -> list[dict[str, Any]]:
        """Flat dicts, one per layer (then a ``total`` row), for a table printer.

        Shapes are strings like ``"301x40"``; ``init_std`` is None where unknown.
        """
        out = [{"layer": lp.name, "sparse_shape": "x".join(map(str, lp.sparse_shape)),
                "dense_shape": "x".join(map(str, lp.dense_shape)), "sparse_total": lp.sparse_total,
                "active": lp.active, "density": lp.density, "dense_count": lp.dense_count,
                "init_std": lp.init_std} for lp in self.layers]
        if include_total:
            t = self.to_dict()["totals"]
            out.append({"layer": "total", "sparse_shape": "", "dense_shape": "",
                        "sparse_total": self.sparse_total, "active": self.sparse_active,
                        "density": t["density"], "dense_count": self.dense_weights,
                        "init_std": None})
        return out


def _kind(module: nn.Module) -> str:
    """Which kind of unpruned parameter a module holds (the keys of ``non_pruned``)."""
    if isinstance(module, PRUNABLE_TYPES):
        return "bias"  # the weight is prunable; what is left is the bias
    if isinstance(module, NORM_TYPES):
        return "norm"
    if isinstance(module, PARAMETRIC_ACTIVATIONS):
        return "activation"
    return "other"


def non_pruned_counts(model: nn.Module) -> dict[str, int]:
    """Parameters that are not prunable weights, counted by kind (buffers excluded)."""
    pruned = {id(p) for p in prunable_parameters(model).values()}
    out = {"bias": 0, "norm": 0, "activation": 0, "other": 0}
    seen: set[int] = set()  # shared parameters count once
    for mod in model.modules():
        for p in mod.parameters(recurse=False):
            if id(p) in pruned or id(p) in seen:
                continue
            seen.add(id(p))
            out[_kind(mod)] += p.numel()
    return out


def pair_table(sparse: nn.Module, dense: nn.Module, counts: Mapping[str, int],
               init_stds: Mapping[str, float] | None = None) -> PairTable:
    """The :class:`PairTable` of S (with active ``counts`` per layer) and its dense twin D.

    ``counts`` is what :func:`same_capacity_counts` returns, or a mask's per-layer active
    counts; it must name every prunable layer of S and stay within each layer's size.
    ``init_stds`` (e.g. from :func:`~sparseflow.scsdc.apply_init_policy`) fills the std column.
    """
    sp, dp = _paired_shapes(sparse, dense)
    missing = [n for n in sp if n not in counts]
    extra = [n for n in counts if n not in sp]
    if missing or extra:
        raise ConfigError(
            f"counts must name exactly the prunable layers {', '.join(map(repr, sp))}; "
            f"missing: {missing or 'none'}, unknown: {extra or 'none'}"
        )
    layers = []
    for n in sp:
        total, active = math.prod(sp[n]), int(counts[n])
        if not 0 <= active <= total:
            raise ConfigError(f"layer {n!r} has {total:,} weights; {active:,} cannot be active")
        std = None if init_stds is None or n not in init_stds else float(init_stds[n])
        layers.append(LayerPair(name=n, sparse_shape=sp[n], dense_shape=dp[n],
                                sparse_total=total, active=active,
                                density=active / total if total else 1.0,
                                dense_count=math.prod(dp[n]), init_std=std))
    ns, nd = non_pruned_counts(sparse), non_pruned_counts(dense)
    ns["all"], nd["all"] = sum(ns.values()), sum(nd.values())
    # Read-only views: the dataclass is frozen, its nested mappings should be too.
    non_pruned = MappingProxyType({k: MappingProxyType(
        {"sparse": ns[k], "dense": nd[k], "difference": ns[k] - nd[k]}) for k in ns})
    return PairTable(layers=tuple(layers), sparse_active=sum(lp.active for lp in layers),
                     sparse_total=sum(lp.sparse_total for lp in layers),
                     dense_weights=sum(lp.dense_count for lp in layers), non_pruned=non_pruned)
