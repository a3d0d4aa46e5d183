"""Spreading one weight budget over layers: ER, ERK (rigl's rule for densities > 1), a dense
first layer, the rounding rule, global budgets, and which configs use them."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import sparseflow  # noqa: F401  (fills the registries)
from sparseflow.config.schema import SparsityConfig
from sparseflow.errors import ConfigError
from sparseflow.scsdc import distribute_budget, er_densities, erk_densities, plan_budget
from sparseflow.scsdc.budget import er_raw, erk_raw, round_to_budget
from sparseflow.sparsity import layer_counts
from sparseflow.train.build import mask_budget


def rigl_densities(shapes: dict[str, tuple[int, ...]], density: float,
                   kernel: bool) -> dict[str, float]:
    """rigl's ``get_sparsities_erdos_renyi`` loop as published, in numpy, on PyTorch shapes.

    Per layer n_zeros = floor(sparsity · n); dense layers subtract their n_zeros from the
    right-hand side; the layers of the largest raw density are made dense one step at a time.
    rigl reads a TF kernel (*k, in, out); a PyTorch weight is (out, in, *k).
    """
    sparsity = 1.0 - density
    dense: set[str] = set()
    while True:
        divisor, rhs, raw = 0.0, 0.0, {}
        for n, shape in shapes.items():
            n_param = int(np.prod(shape))
            n_zeros = int(np.floor(sparsity * n_param))
            if n in dense:
                rhs -= n_zeros
            else:
                rhs += n_param - n_zeros
                if kernel:
                    raw[n] = np.sum(shape) / np.prod(shape)
                else:
                    n_out, n_in = shape[0], shape[1]
                    raw[n] = (n_in + n_out) / (n_in * n_out)
                divisor += raw[n] * n_param
        eps = rhs / divisor
        max_prob = max(raw.values())
        if max_prob * eps > 1:
            dense |= {n for n, r in raw.items() if r == max_prob}
        else:
            return {n: 1.0 if n in dense else eps * raw[n] for n in shapes}


def test_er_by_hand_linear_and_conv() -> None:
    shapes = {"a": (100, 50), "b": (10, 100)}
    # raw a = 150/5000 = 0.03, b = 110/1000 = 0.11; eps = 1000 / (0.03·5000 + 0.11·1000)
    eps = 1000 / 260
    dens = er_densities(shapes, 1000)
    assert dens == pytest.approx({"a": 0.03 * eps, "b": 0.11 * eps})
    # A conv: ER reads channels only ((8 + 16) / (8·16)); ERK every dim.
    assert er_raw((16, 8, 3, 3)) == pytest.approx(24 / 128)
    assert erk_raw((16, 8, 3, 3)) == pytest.approx(30 / 1152)
    assert er_raw((10, 100)) == erk_raw((10, 100))  # Linear: the same rule


def test_erk_first_layer_over_one_is_made_dense_and_resolved() -> None:
    # A small CNN at density 0.5 (rigl's situation: the 3-channel first conv would exceed 1).
    shapes = {"conv1": (16, 3, 3, 3), "conv2": (32, 16, 3, 3), "fc": (10, 32)}
    total = 432 + 4608 + 320
    dens = erk_densities(shapes, total // 2)
    # eps = 2680 / (25 + 54 + 42) makes conv1 (25/432·eps = 1.28) and fc (42/320·eps = 2.9)
    # exceed 1: both dense, conv2 keeps the rest: (2680 − 432 − 320) / 4608.
    assert dens["conv1"] == dens["fc"] == 1.0
    assert dens["conv2"] == pytest.approx(1928 / 4608)
    assert dens == pytest.approx(rigl_densities(shapes, 0.5, kernel=True), rel=1e-9)
    counts = distribute_budget(shapes, total // 2, "erk")
    assert counts == {"conv1": 432, "conv2": 1928, "fc": 320}


shape_st = st.one_of(
    st.tuples(st.integers(2, 40), st.integers(2, 40)),
    st.tuples(st.integers(2, 16), st.integers(1, 16), st.integers(1, 3), st.integers(1, 3)),
)


@settings(max_examples=60, deadline=None)
@given(st.lists(shape_st, min_size=2, max_size=5), st.floats(0.05, 0.95),
       st.sampled_from(["er", "erk"]))
def test_er_erk_match_rigl_and_sum_to_the_budget(shapes, density, dist) -> None:
    named = {f"l{i}": s for i, s in enumerate(shapes)}
    sizes = {n: math.prod(s) for n, s in named.items()}
    # rigl's budget: Σ (n − floor(sparsity · n)); the same budget gives the same densities.
    budget = sum(n - math.floor((1 - density) * n) for n in sizes.values())
    fn = er_densities if dist == "er" else erk_densities
    ours = fn(named, budget)
    assert ours == pytest.approx(rigl_densities(named, density, kernel=dist == "erk"),
                                 rel=1e-9, abs=1e-12)
    assert max(ours.values()) <= 1.0 + 1e-12
    if budget >= len(named):
        counts = distribute_budget(named, budget, dist)
        assert sum(counts.values()) == budget
        assert all(1 <= counts[n] <= sizes[n] for n in named)
        # Largest remainder: each count within one of its real target (or clamped to 1).
        assert all(abs(counts[n] - ours[n] * sizes[n]) < 1 or counts[n] == 1 for n in named)


def test_dense_first_layer_by_hand() -> None:
    shapes = {"a": (10, 4), "b": (10, 10), "c": (2, 10)}
    # a keeps 40; b and c share 40 uniformly: targets 100·40/120 = 33.3, 20·40/120 = 6.7;
    # floors 33 + 6 = 39, the missing unit goes to the largest remainder (c).
    assert distribute_budget(shapes, 80, "uniform", dense_first_layer=True) == {
        "a": 40, "b": 33, "c": 7}
    er = distribute_budget(shapes, 80, "er", dense_first_layer=True)
    assert er["a"] == 40 and sum(er.values()) == 80
    with pytest.raises(ConfigError, match="keeps all 40 weights of layer 'a'"):
        distribute_budget(shapes, 39, "uniform", dense_first_layer=True)


def test_round_to_budget_largest_remainder() -> None:
    sizes = {"a": 10, "b": 10, "c": 10}
    # floors 2 + 3 + 4 = 9 of 11: units go to the largest remainders, c (0.9) then a (0.6).
    assert round_to_budget({"a": 2.6, "b": 3.2, "c": 4.9}, sizes, 11) == {"a": 3, "b": 3, "c": 5}
    # targets below 1 are clamped up (1 + 1 + 5 = 7 > 6); the surplus unit leaves the layer
    # that can give one (keeps ≥ 1) furthest above its target: c.
    assert round_to_budget({"a": 0.2, "b": 0.4, "c": 5.4}, sizes, 6) == {"a": 1, "b": 1, "c": 4}


def test_global_budgets_have_no_fixed_split() -> None:
    shapes = {"a": (10, 4), "b": (10, 10)}
    b = plan_budget(shapes, 50, "global")
    assert b.is_global and b.total == 50 and b.ranked == ["a", "b"] and b.ranked_total == 50
    b = plan_budget(shapes, 50, "global", dense_first_layer=True)
    assert b.dense == ("a",) and b.ranked == ["b"] and b.ranked_total == 10
    with pytest.raises(ConfigError, match="no fixed counts"):
        distribute_budget(shapes, 50, "global")
    with pytest.raises(ConfigError, match="between 1 and the 140"):
        plan_budget(shapes, 141, "global")


def _params(*shapes: tuple[int, ...]) -> dict[str, torch.Tensor]:
    return {f"l{i}": torch.zeros(s) for i, s in enumerate(shapes)}


def test_which_configs_split_one_budget() -> None:
    params = _params((30, 40), (30, 30), (10, 30))
    total = 1200 + 900 + 300
    # One density, uniform: today's per-layer round(d · n), unchanged.
    cfg = SparsityConfig(density=0.137)
    assert dict(mask_budget(cfg, params, None, None).counts) == layer_counts(params, 0.137)
    # One density with a distribution: round(d · Σ n) spread by it.
    erk = mask_budget(SparsityConfig(density=0.3, distribution="erk"), params, None, None)
    assert erk.total == round(0.3 * total)
    assert dict(erk.counts) == distribute_budget({n: tuple(p.shape) for n, p in params.items()},
                                                 round(0.3 * total), "erk")
    first = mask_budget(SparsityConfig(density=0.7, dense_first_layer=True), params, None, None)
    assert first.counts["l0"] == 1200 and first.total == round(0.7 * total)
    glob = mask_budget(SparsityConfig(density=0.3, distribution="global"), params, None, None)
    assert glob.is_global and glob.total == round(0.3 * total)


def test_schema_refuses_a_split_of_per_layer_counts() -> None:
    with pytest.raises(ValueError, match="matching: total"):
        SparsityConfig(dense_width=8, distribution="er")
    with pytest.raises(ValueError, match="one sparsity.density"):
        SparsityConfig(layer_densities={"a": 0.5}, distribution="global")
