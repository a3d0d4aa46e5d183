"""Init-matching policies: active-weight std against theory, exact zeros, explicit randomness."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

import sparseflow  # noqa: F401  (fills the registries)
from sparseflow.errors import ConfigError
from sparseflow.models import fans, init_std
from sparseflow.scsdc import INIT_POLICIES, apply_init_policy

POLICIES = ["dense", "sparse_fanin", "layer_scaled", "standard"]
DENSE_FANS = {"weight": (400, 300)}  # a dense twin's fans (fan_in, fan_out)


def big_layer(init: str, density: float = 0.05, seed: int = 0) -> tuple[nn.Linear, torch.Tensor]:
    """A 2000×2000 Linear with the init drawn and a random mask of exactly ``density``."""
    layer = nn.Linear(2000, 2000)
    g = torch.Generator().manual_seed(seed)
    sparseflow.registry.INITS.get(init)(layer.weight, fan_in=2000, fan_out=2000, generator=g)
    keep = torch.zeros(2000 * 2000, dtype=torch.bool)
    keep[torch.randperm(keep.numel(), generator=g)[: round(density * keep.numel())]] = True
    return layer, keep.view(2000, 2000)


def run(policy: str, layer: nn.Module, keep: torch.Tensor, init: str,
        seed: int = 1) -> dict[str, float]:
    return apply_init_policy(policy, layer, {"weight": keep}, init=init,
                             generator=torch.Generator().manual_seed(seed), dense_fans=DENSE_FANS)


def test_every_policy_is_registered_with_a_docstring() -> None:
    assert sorted(INIT_POLICIES.names()) == sorted(POLICIES)
    assert all(INIT_POLICIES.describe(p) for p in POLICIES)


@pytest.mark.parametrize("init", ["kaiming_normal", "xavier_uniform"])
@pytest.mark.parametrize("policy", POLICIES)
def test_active_std_matches_theory_and_pruned_are_zero(policy: str, init: str) -> None:
    layer, keep = big_layer(init)
    stds = run(policy, layer, keep, init)
    w = layer.weight.detach()
    assert torch.all(w[~keep] == 0) and not torch.signbit(w[~keep]).any()  # exactly +0
    expected = {  # 200k active weights: sample std within ~0.2% of the truth
        "dense": init_std(init, *DENSE_FANS["weight"]),
        "layer_scaled": init_std(init, 2000, 2000) / math.sqrt(0.05),
        "standard": init_std(init, 2000, 2000),
    }
    if policy == "sparse_fanin":
        # Per unit: std from the unit's active fan-in, fan_out = mean active fan-out (100).
        a = keep.sum(dim=1)
        unit_std = torch.tensor([init_std(init, int(k), 100) for k in a], dtype=torch.float64)
        z = (w / unit_std[:, None])[keep]  # standardized active weights
        assert z.std().item() == pytest.approx(1.0, rel=0.03)
        expected["sparse_fanin"] = math.sqrt(float((a * unit_std**2).sum() / a.sum()))
    assert stds["weight"] == pytest.approx(expected[policy], rel=1e-9)
    assert w[keep].std().item() == pytest.approx(expected[policy], rel=0.03)
    assert abs(w[keep].mean().item()) < 0.01 * expected[policy]


def test_sparse_fanin_scales_each_unit_by_its_own_fan_in() -> None:
    # Rows 0..999 keep 20 inputs, rows 1000..1999 keep 500, row 7 keeps none.
    layer = nn.Linear(1000, 2000)
    keep = torch.zeros(2000, 1000, dtype=torch.bool)
    keep[:1000, :20] = True
    keep[1000:, :500] = True
    keep[7] = False
    run("sparse_fanin", layer, keep, "kaiming_uniform")
    w = layer.weight.detach()
    assert w[:1000][keep[:1000]].std().item() == pytest.approx(math.sqrt(2 / 20), rel=0.03)
    assert w[1000:][keep[1000:]].std().item() == pytest.approx(math.sqrt(2 / 500), rel=0.03)
    assert torch.all(w[7] == 0)
    # Uniform family kept: every weight within its unit's bound √3·std.
    assert w[:1000].abs().max().item() <= math.sqrt(3 * 2 / 20) * (1 + 1e-6)


@pytest.mark.parametrize("policy", POLICIES)
def test_same_seed_same_weights_and_global_rng_untouched(policy: str) -> None:
    layer, keep = big_layer("kaiming_normal", density=0.3)
    layer2 = nn.Linear(2000, 2000)
    with torch.no_grad():
        layer2.weight.copy_(layer.weight)
        layer2.bias.fill_(0.5)
    bias_before = layer.bias.detach().clone()
    rng = torch.get_rng_state()
    run(policy, layer, keep, "kaiming_normal", seed=3)
    assert torch.equal(torch.get_rng_state(), rng)
    run(policy, layer2, keep, "kaiming_normal", seed=3)
    assert torch.equal(layer.weight, layer2.weight)
    assert torch.equal(layer.bias, bias_before)  # biases untouched
    assert torch.all(layer2.bias == 0.5)


def test_other_seed_other_weights() -> None:
    layer, keep = big_layer("kaiming_normal", density=0.3)
    layer2 = nn.Linear(2000, 2000)
    run("dense", layer, keep, "kaiming_normal", seed=3)
    run("dense", layer2, keep, "kaiming_normal", seed=4)
    assert not torch.equal(layer.weight, layer2.weight)


def test_conv_units_are_output_channels_and_norms_untouched() -> None:
    model = nn.Sequential(nn.Conv2d(16, 64, 3), nn.BatchNorm2d(64), nn.Flatten(),
                          nn.Linear(64, 10))
    with torch.no_grad():
        model[1].weight.fill_(2.0)
    g = torch.Generator().manual_seed(0)
    keep = torch.rand(64, 16, 3, 3, generator=g) < 0.25
    keep[5] = False  # a channel with no active input
    stds = apply_init_policy("sparse_fanin", model, {"0.weight": keep}, init="kaiming_normal",
                             generator=g)
    w = model[0].weight.detach()
    assert torch.all(w[~keep] == 0) and torch.all(w[5] == 0)
    a = keep.flatten(1).sum(dim=1)  # (64,) active fan-in per output channel (kernel counted)
    z = torch.cat([w[c][keep[c]] / init_std("kaiming_normal", int(a[c]), 1)
                   for c in range(64) if a[c] > 0])
    assert z.std().item() == pytest.approx(1.0, rel=0.05)  # ~9k draws
    assert torch.all(model[1].weight == 2.0)
    # The Linear head is absent from the mask: dense, so its own fan-in sets its std.
    assert stds["3.weight"] == pytest.approx(init_std("kaiming_normal", *fans(model[3].weight)))


def test_dense_policy_needs_dense_fans_and_names_are_checked() -> None:
    layer = nn.Linear(20, 30)
    keep = {"weight": torch.ones(30, 20, dtype=torch.bool)}
    g = torch.Generator()
    with pytest.raises(ValueError, match="dense_fans"):
        apply_init_policy("dense", layer, keep, init="kaiming_normal", generator=g)
    with pytest.raises(ConfigError, match="lacks the layers 'weight'"):
        apply_init_policy("dense", layer, keep, init="kaiming_normal", generator=g,
                          dense_fans={})
    with pytest.raises(ConfigError, match="Did you mean 'sparse_fanin'"):
        apply_init_policy("sparse_fan_in", layer, keep, init="kaiming_normal", generator=g)
    with pytest.raises(ConfigError, match="unknown init"):
        apply_init_policy("standard", layer, keep, init="he", generator=g)
    with pytest.raises(ConfigError, match="not a prunable weight"):
        apply_init_policy("standard", layer, {"bias": torch.ones(30, dtype=torch.bool)},
                          init="kaiming_normal", generator=g)
    with pytest.raises(ConfigError, match="shape"):
        apply_init_policy("standard", layer, {"weight": torch.ones(20, 30, dtype=torch.bool)},
                          init="kaiming_normal", generator=g)


def test_standard_draws_nothing() -> None:
    layer, keep = big_layer("kaiming_normal", density=0.5)
    before = layer.weight.detach().clone()
    g = torch.Generator().manual_seed(9)
    state = g.get_state()
    apply_init_policy("standard", layer, {"weight": keep}, init="kaiming_normal", generator=g)
    assert torch.equal(g.get_state(), state)
    assert torch.equal(layer.weight.detach(), before * keep)
