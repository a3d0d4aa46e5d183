"""gradient_flow / gradients_of against hand-computed values and independent computations."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from sparseflow.gradflow import MEASURES, gradient_flow, gradients_of
from sparseflow.sparsity.mask import Mask


def test_hand_computed_two_layers() -> None:
    # Layer a (2x2) with a mask keeping 1 and -4; layer b (3,) dense (absent from masks).
    grads = {
        "a": torch.tensor([[1.0, -2.0], [3.0, -4.0]]),
        "b": torch.tensor([2.0, 0.0, -1.0]),
    }
    masks = {"a": torch.tensor([[True, False], [False, True]])}
    r = gradient_flow(grads, masks)
    # raw: |a|_1 = 10, |a|_2^2 = 30; |b|_1 = 3, |b|_2^2 = 5; masked a: |.|_1 = 5, |.|_2^2 = 17
    expected = {
        "gf1": 13.0,
        "gf2": math.sqrt(35.0),
        "gf1_masked": 8.0,
        "gf2_masked": math.sqrt(22.0),
        "egf1": (5.0 + 3.0) / 2,
        "egf2": (math.sqrt(17.0) + math.sqrt(5.0)) / 2,
        "egf1_per_weight": (5.0 / 2 + 3.0 / 3) / 2,
        "egf2_per_weight": (math.sqrt(17.0) / 2 + math.sqrt(5.0) / 3) / 2,
    }
    for key, value in expected.items():
        assert r[key] == pytest.approx(value, rel=1e-12), key
        assert type(r[key]) is float
    assert set(MEASURES) == set(expected)
    a, b = r["per_layer"]["a"], r["per_layer"]["b"]
    assert a["norm1"] == 5.0 and a["norm2"] == pytest.approx(math.sqrt(17.0))
    assert a["norm1_raw"] == 10.0 and a["norm2_raw"] == pytest.approx(math.sqrt(30.0))
    assert (a["active"], a["total"], a["density"]) == (2, 4, 0.5)
    assert a["norm1_per_weight"] == 2.5
    assert a["norm2_per_weight"] == pytest.approx(math.sqrt(17.0) / 2)
    assert (b["active"], b["total"], b["density"]) == (3, 3, 1.0)
    assert b["norm1"] == b["norm1_raw"] == 3.0
    assert list(r["per_layer"]) == ["a", "b"]  # layer order kept


def _random_set(seed: int) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    gen = torch.Generator().manual_seed(seed)
    shapes = {"l0.weight": (16, 8), "l1.weight": (16, 16), "conv.weight": (4, 3, 3, 3)}
    grads = {n: torch.randn(s, generator=gen) for n, s in shapes.items()}
    masks = {n: torch.rand(s, generator=gen) < 0.3 for n, s in shapes.items()}
    return grads, masks


@pytest.mark.parametrize("poison", [1e30, float("nan"), float("inf")])
def test_pruned_positions_never_leak(poison: float) -> None:
    grads, masks = _random_set(0)
    clean = {n: torch.where(masks[n], g, 0.0) for n, g in grads.items()}
    dirty = {n: torch.where(masks[n], g, poison) for n, g in grads.items()}
    r_clean, r_dirty = gradient_flow(clean, masks), gradient_flow(dirty, masks)
    for key in ("gf1_masked", "gf2_masked", "egf1", "egf2", "egf1_per_weight", "egf2_per_weight"):
        assert r_dirty[key] == r_clean[key], key
        assert math.isfinite(r_dirty[key])
    for name in grads:
        for key in ("norm1", "norm2", "norm1_per_weight", "norm2_per_weight"):
            assert r_dirty["per_layer"][name][key] == r_clean["per_layer"][name][key]
    # The raw measures do see the poison (so the test above could have failed).
    assert not r_dirty["gf1"] < 1e29


def test_dense_egf_is_mean_of_layer_norms_and_masked_equals_raw() -> None:
    grads, _ = _random_set(1)
    r = gradient_flow(grads)
    n1 = [g.double().abs().sum().item() for g in grads.values()]
    n2 = [g.double().norm().item() for g in grads.values()]
    assert r["egf1"] == pytest.approx(sum(n1) / 3, rel=1e-12)
    assert r["egf2"] == pytest.approx(sum(n2) / 3, rel=1e-12)
    assert r["gf1_masked"] == r["gf1"] and r["gf2_masked"] == r["gf2"]
    flat = torch.cat([g.double().flatten() for g in grads.values()])
    assert r["gf2"] == pytest.approx(flat.norm().item(), rel=1e-12)
    # All-True masks are the same as no mask.
    ones = {n: torch.ones_like(g, dtype=torch.bool) for n, g in grads.items()}
    assert {k: r[k] for k in MEASURES} == {k: gradient_flow(grads, ones)[k] for k in MEASURES}


def test_a_huge_last_layer_makes_gf_and_egf_rank_differently() -> None:
    # Small first layer (10 weights) and a huge last layer (10_000 weights), both dense.
    # A: tiny first-layer gradients, last layer norm 3   -> per-layer L2 norms (0.32, 3.0)
    # B: first-layer norm 2, last layer norm 2           -> per-layer L2 norms (2.0, 2.0)
    a = {"first": torch.full((10,), 0.1), "last": torch.full((10_000,), 0.03)}
    b = {"first": torch.full((10,), 2 / math.sqrt(10)), "last": torch.full((10_000,), 0.02)}
    ra, rb = gradient_flow(a), gradient_flow(b)
    assert ra["gf2"] > rb["gf2"]  # concatenated norm: dominated by the big layer
    assert ra["egf2"] < rb["egf2"]  # equal layer weights: B flows better
    assert ra["egf2_per_weight"] < rb["egf2_per_weight"]


def test_gf1_and_egf1_rank_differently_through_pruned_gradients() -> None:
    mask = {"w": torch.tensor([True, False]), "v": torch.tensor([True, True])}
    a = {"w": torch.tensor([1.0, 100.0]), "v": torch.tensor([1.0, 1.0])}  # big pruned grad
    b = {"w": torch.tensor([3.0, 0.0]), "v": torch.tensor([3.0, 3.0])}
    ra, rb = gradient_flow(a, mask), gradient_flow(b, mask)
    assert ra["gf1"] > rb["gf1"] and ra["egf1"] < rb["egf1"]


def test_dtype_barely_matters() -> None:
    grads, masks = _random_set(2)
    r32 = gradient_flow(grads, masks)
    r64 = gradient_flow({n: g.double() for n, g in grads.items()}, masks)
    r16 = gradient_flow({n: g.bfloat16() for n, g in grads.items()}, masks)
    for key in MEASURES:
        assert r32[key] == r64[key]  # float32 values are exact in float64
        assert r16[key] == pytest.approx(r64[key], rel=1e-2)


def test_zero_active_layer_contributes_zero_per_weight() -> None:
    grads = {"a": torch.tensor([1.0, 2.0]), "b": torch.tensor([4.0])}
    r = gradient_flow(grads, {"a": torch.tensor([False, False])})
    assert r["per_layer"]["a"]["active"] == 0 and r["per_layer"]["a"]["density"] == 0.0
    assert r["egf1_per_weight"] == (0.0 + 4.0) / 2
    assert r["egf1"] == 2.0 and r["gf1"] == 7.0 and r["gf1_masked"] == 4.0


@pytest.mark.parametrize(
    ("grads", "masks", "message"),
    [
        ({}, None, "at least one layer"),
        ({"a": torch.ones(2)}, {"b": torch.ones(2, dtype=torch.bool)}, "not in grads"),
        ({"a": torch.ones(2)}, {"a": torch.ones(3, dtype=torch.bool)}, "shape"),
        ({"a": torch.ones(2)}, {"a": torch.ones(2)}, "dtype"),
        ({"a": torch.ones(2)}, {"a": [True, False]}, "not a bool tensor"),
        ({"a": None}, None, "not a tensor"),
    ],
)
def test_bad_input_raises_one_line(grads: dict, masks: dict | None, message: str) -> None:
    with pytest.raises(ValueError, match=message) as info:
        gradient_flow(grads, masks)
    assert "\n" not in str(info.value)


def test_mask_object_is_accepted() -> None:
    grads, masks = _random_set(3)
    assert gradient_flow(grads, Mask(masks)) == gradient_flow(grads, masks)


@settings(max_examples=30, deadline=None)
@given(st.lists(st.integers(1, 40), min_size=1, max_size=5), st.integers(0, 2**31 - 1))
def test_invariants(sizes: list[int], seed: int) -> None:
    gen = torch.Generator().manual_seed(seed)
    grads = {f"l{i}": torch.randn(n, generator=gen) for i, n in enumerate(sizes)}
    masks = {n: torch.rand(g.shape, generator=gen) < 0.5 for n, g in grads.items()}
    r = gradient_flow(grads, masks)
    assert r["gf1_masked"] <= r["gf1"] + 1e-12 and r["gf2_masked"] <= r["gf2"] + 1e-12
    assert r["egf1"] * len(sizes) == pytest.approx(r["gf1_masked"], rel=1e-12, abs=1e-300)
    # EGF2 lies between (1/L)·‖g‖₂ and ‖g‖₂/√L (power-mean inequalities over layer norms).
    gm = r["gf2_masked"]
    assert gm / len(sizes) - 1e-12 <= r["egf2"] <= gm / math.sqrt(len(sizes)) + 1e-12


def _mlp() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 6), nn.BatchNorm1d(6), nn.ReLU(), nn.Linear(6, 2))


def test_gradients_of_reads_prunable_weights_in_order() -> None:
    model = _mlp()
    with pytest.raises(ValueError, match=r"0\.weight.*no gradient"):
        gradients_of(model)
    model(torch.randn(8, 4)).sum().backward()
    grads = gradients_of(model)
    assert list(grads) == ["0.weight", "3.weight"]
    assert grads["0.weight"] is not model[0].weight.grad  # detached view of the same data
    assert torch.equal(grads["0.weight"], model[0].weight.grad)
    everything = gradients_of(model, include_all=True)
    assert list(everything) == [n for n, _ in model.named_parameters()]
    assert list(gradients_of(model, names=["3.bias", "0.weight"])) == ["3.bias", "0.weight"]
    with pytest.raises(ValueError, match="not trainable parameters"):
        gradients_of(model, names=["nope"])


def test_gradients_of_skips_frozen_layers() -> None:
    model = _mlp()
    model[0].requires_grad_(False)
    model(torch.randn(8, 4)).sum().backward()
    assert list(gradients_of(model)) == ["3.weight"]
