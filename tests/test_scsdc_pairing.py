"""SC-SDC pairing: exact per-layer counts, total budgets (uniform/ERK), the pair table."""

from __future__ import annotations

import json
import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

import sparseflow  # noqa: F401  (fills the registries)
from sparseflow.config import ModelConfig
from sparseflow.errors import ConfigError
from sparseflow.models import build_model
from sparseflow.scsdc import distribute_budget, erk_densities, pair_table, same_capacity_counts

NAMES = ["hidden.0.linear.weight", "hidden.1.linear.weight", "hidden.2.linear.weight",
         "hidden.3.linear.weight", "out.weight"]


def mlp(width: int, **kw: object) -> nn.Module:
    """A 4-hidden-layer MLP on 40 inputs, 10 classes."""
    cfg = ModelConfig(width=width, hidden_layers=4, **kw)
    return build_model(cfg, (40,), 10, generator=torch.Generator().manual_seed(0))


class TinyCNN(nn.Module):
    """Two 3×3 convs of width ``w`` and a linear head: conv kernels are prunable too."""

    def __init__(self, w: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, w, 3, padding=1)
        self.conv2 = nn.Conv2d(w, w, 3, padding=1)
        self.bn = nn.BatchNorm2d(w)
        self.head = nn.Linear(w, 10)


def test_per_layer_counts_of_an_mlp_with_odd_widths() -> None:
    counts = same_capacity_counts(mlp(301), mlp(97))
    # Hand-computed: d·W_D, W_D² three times, W_D·c.
    assert counts == {NAMES[0]: 40 * 97, NAMES[1]: 97 * 97, NAMES[2]: 97 * 97,
                      NAMES[3]: 97 * 97, NAMES[4]: 97 * 10}
    assert list(counts) == NAMES  # model order


def test_per_layer_counts_of_conv_kernels() -> None:
    counts = same_capacity_counts(TinyCNN(48), TinyCNN(20))
    assert counts == {"conv1.weight": 20 * 3 * 9, "conv2.weight": 20 * 20 * 9,
                      "head.weight": 10 * 20}


def test_dense_twin_on_the_meta_device_is_enough() -> None:
    with torch.device("meta"):
        twin = TinyCNN(20)
    assert same_capacity_counts(TinyCNN(48), twin)["conv2.weight"] == 20 * 20 * 9


def test_dense_wider_than_sparse_names_the_first_offending_layer() -> None:
    with pytest.raises(ConfigError) as err:
        same_capacity_counts(mlp(64), mlp(128))
    msg = str(err.value)
    assert "'hidden.0.linear.weight'" in msg
    assert "5,120" in msg and "2,560" in msg  # 40·128 dense vs 40·64 sparse
    assert "dense width must not exceed the sparse width" in msg
    with pytest.raises(ConfigError, match="hidden.0.linear.weight"):
        same_capacity_counts(mlp(64), mlp(128), matching="total")


def test_layers_in_one_model_only_are_named() -> None:
    deeper = build_model(ModelConfig(width=97, hidden_layers=5), (40,), 10,
                         generator=torch.Generator().manual_seed(0))
    with pytest.raises(ConfigError, match=r"only in the dense model: 'hidden\.4\.linear\.weight'"):
        same_capacity_counts(mlp(301), deeper)
    with pytest.raises(ConfigError, match="different kinds"):
        same_capacity_counts(nn.Sequential(nn.Conv1d(4, 8, 3)), nn.Sequential(nn.Linear(4, 8)))


def test_unknown_matching_or_distribution() -> None:
    with pytest.raises(ConfigError, match="per_layer, total"):
        same_capacity_counts(mlp(30), mlp(20), matching="global")
    with pytest.raises(ConfigError, match="uniform, er, erk, global"):
        same_capacity_counts(mlp(30), mlp(20), matching="total", distribution="erx")


@pytest.mark.parametrize("distribution", ["uniform", "erk"])
def test_total_matching_keeps_the_dense_total(distribution: str) -> None:
    s, d = mlp(301), mlp(97)
    counts = same_capacity_counts(s, d, matching="total", distribution=distribution)
    assert sum(counts.values()) == 40 * 97 + 3 * 97 * 97 + 97 * 10
    assert counts != same_capacity_counts(s, d)  # the split differs from per-layer


def test_uniform_gives_every_layer_the_same_density() -> None:
    shapes = {"a": (100, 40), "b": (100, 100), "c": (10, 100)}
    counts = distribute_budget(shapes, 7_000, "uniform")  # 7000 / 15000 of every layer
    for n, s in shapes.items():
        assert abs(counts[n] - 7_000 / 15_000 * math.prod(s)) < 1


def test_erk_densities_follow_the_formula_and_saturate_small_layers() -> None:
    # raw = Σdims/Πdims: a (1000, 1000) = 0.002, b (10, 1000) = 0.101 → b saturates at 1.
    shapes = {"a": (1000, 1000), "b": (10, 1000)}
    dens = erk_densities(shapes, 100_000)
    assert dens["b"] == 1.0
    assert dens["a"] == pytest.approx((100_000 - 10_000) / 1_000_000)
    # No saturation: densities ∝ raw, and the budget is met exactly in expectation.
    shapes = {"a": (300, 200), "b": (200, 100), "c": (64, 32, 3, 3)}
    raw = {n: sum(s) / math.prod(s) for n, s in shapes.items()}
    dens = erk_densities(shapes, 20_000)
    assert max(dens.values()) < 1
    for n in shapes:
        assert dens[n] / raw[n] == pytest.approx(dens["a"] / raw["a"])
    assert sum(dens[n] * math.prod(s) for n, s in shapes.items()) == pytest.approx(20_000)


def test_infeasible_budgets_raise() -> None:
    shapes = {"a": (2, 3), "b": (4, 5)}
    with pytest.raises(ConfigError, match="budget of 1 weights"):
        distribute_budget(shapes, 1)
    with pytest.raises(ConfigError, match="26 weights in all"):
        distribute_budget(shapes, 27, "erk")
    assert distribute_budget(shapes, 26, "erk") == {"a": 6, "b": 20}
    assert distribute_budget(shapes, 2, "erk") == {"a": 1, "b": 1}


shape_st = st.lists(st.integers(1, 12), min_size=2, max_size=4).map(tuple)


@settings(max_examples=300, deadline=None)
@given(shapes=st.lists(shape_st, min_size=1, max_size=6), frac=st.floats(0.0, 1.0),
       distribution=st.sampled_from(["uniform", "erk"]))
def test_counts_sum_exactly_to_the_budget(shapes: list[tuple[int, ...]], frac: float,
                                          distribution: str) -> None:
    named = {f"l{i}": s for i, s in enumerate(shapes)}
    sizes = [math.prod(s) for s in shapes]
    budget = len(sizes) + round(frac * (sum(sizes) - len(sizes)))  # every feasible budget
    counts = distribute_budget(named, budget, distribution)
    assert sum(counts.values()) == budget
    for (n, s), size in zip(named.items(), sizes, strict=True):
        assert 1 <= counts[n] <= size, (n, s)


def test_pair_table_per_layer_and_non_pruned_mismatch() -> None:
    kw = {"batchnorm": True, "activation": "prelu"}
    s, d = mlp(301, **kw), mlp(97, **kw)
    counts = same_capacity_counts(s, d)
    table = pair_table(s, d, counts, init_stds={n: 0.1 for n in NAMES})
    assert [lp.name for lp in table.layers] == NAMES
    first = table.layers[0]
    assert (first.sparse_shape, first.dense_shape) == ((301, 40), (97, 40))
    assert (first.sparse_total, first.active, first.dense_count) == (301 * 40, 40 * 97, 40 * 97)
    assert first.density == pytest.approx(97 / 301) and first.init_std == 0.1
    assert all(lp.matched for lp in table.layers) and table.matched
    assert table.sparse_active == table.dense_weights == 40 * 97 + 3 * 97**2 + 970
    assert table.sparse_total == 40 * 301 + 3 * 301**2 + 3010
    # Unmatched parameters, by hand: biases only on the output layer (hidden layers feed
    # BatchNorm and have none), BN 2·4W, PReLU slopes 4W.
    npr = table.non_pruned
    assert npr["bias"] == {"sparse": 10, "dense": 10, "difference": 0}
    assert npr["norm"]["difference"] == 8 * 204 and npr["activation"]["sparse"] == 4 * 301
    assert npr["all"]["difference"] == 12 * 204 and npr["other"]["sparse"] == 0
    out = json.loads(json.dumps(table.to_dict()))
    assert out["totals"]["matched"] is True
    assert out["layers"][1]["sparse_shape"] == [301, 301]
    rows = table.rows()
    assert len(rows) == 6 and rows[-1]["layer"] == "total"
    assert rows[0]["sparse_shape"] == "301x40" and rows[0]["init_std"] == 0.1
    assert rows[-1]["active"] == table.sparse_active
    assert len(table.rows(include_total=False)) == 5


def test_pair_table_under_total_matching_and_bad_counts() -> None:
    s, d = TinyCNN(48), TinyCNN(20)
    counts = same_capacity_counts(s, d, matching="total", distribution="erk")
    table = pair_table(s, d, counts)
    assert table.matched and table.layers[0].init_std is None
    assert not all(lp.matched for lp in table.layers)  # ERK moves weights between layers
    assert table.non_pruned["norm"]["difference"] == 2 * 28
    with pytest.raises(ConfigError, match="missing"):
        pair_table(s, d, {"conv1.weight": 1})
    with pytest.raises(ConfigError, match="cannot be active"):
        pair_table(s, d, {**counts, "head.weight": 10 * 48 + 1})
