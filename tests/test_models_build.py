"""build_model / init_model_ (generator-only randomness) and SeededDropout itself."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

import sparseflow.models  # noqa: F401  (registers models, activations, inits)
from sparseflow.config import ModelConfig
from sparseflow.errors import ConfigError
from sparseflow.models import (
    SeededDropout,
    SReLU,
    build_model,
    fans,
    init_model_,
    set_dropout_generator,
)
from sparseflow.registry import INITS, MODELS
from sparseflow.sparsity.mask import prunable_parameters


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


CFGS = [
    ModelConfig(width=24, hidden_layers=2),
    ModelConfig(width=24, hidden_layers=3, activation="srelu", batchnorm=True, skip=True),
    ModelConfig(width=24, hidden_layers=1, activation="prelu", init="xavier_uniform", bias=False),
]


@pytest.mark.parametrize("cfg", CFGS)
def test_build_model_leaves_the_global_rng_alone(cfg: ModelConfig) -> None:
    state = torch.get_rng_state()
    build_model(cfg, (1, 8, 8), 10, dropout=0.2, generator=_gen(0))
    assert torch.equal(torch.get_rng_state(), state)


@pytest.mark.parametrize("cfg", CFGS)
def test_same_seed_bitwise_identical_other_seed_differs(cfg: ModelConfig) -> None:
    a, b, c = (build_model(cfg, (40,), 10, generator=_gen(s)).state_dict() for s in (5, 5, 6))
    assert list(a) == list(b)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(a["out.weight"], c["out.weight"])


def test_build_model_does_not_depend_on_the_global_rng_state() -> None:
    cfg = CFGS[1]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        a = build_model(cfg, (40,), 10, generator=_gen(3)).state_dict()
        torch.manual_seed(1)
        b = build_model(cfg, (40,), 10, generator=_gen(3)).state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_weights_are_drawn_in_model_order_with_their_own_fans() -> None:
    # Pins the draw contract: one generator, prunable weights in order, each with its fans.
    cfg = ModelConfig(width=12, hidden_layers=3, init="kaiming_uniform")
    model = build_model(cfg, (40,), 10, generator=_gen(9))
    g = _gen(9)
    for w in prunable_parameters(model).values():
        expected = torch.empty_like(w)
        fan_in, fan_out = fans(w)
        INITS.get("kaiming_uniform")(expected, fan_in=fan_in, fan_out=fan_out, generator=g)
        assert torch.equal(w, expected)


def test_init_model_resets_everything_else_deterministically() -> None:
    cfg = ModelConfig(width=8, hidden_layers=2, activation="srelu", batchnorm=True)
    model = build_model(cfg, (40,), 10, generator=_gen(0))
    fresh = copy.deepcopy(model.state_dict())
    # Disturb every parameter and the BN statistics, then re-initialize with the same seed.
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.5)
    model.train()(torch.randn(16, 40, generator=_gen(1)))
    assert model.hidden[0].norm.num_batches_tracked.item() == 1
    init_model_(model, "kaiming_normal", _gen(0))
    after = model.state_dict()
    assert all(torch.equal(after[k], fresh[k]) for k in fresh)
    norm = model.hidden[0].norm
    assert torch.equal(norm.weight, torch.ones(8)) and torch.equal(norm.bias, torch.zeros(8))
    assert torch.equal(norm.running_mean, torch.zeros(8))
    assert torch.equal(norm.running_var, torch.ones(8))
    assert norm.num_batches_tracked.item() == 0
    assert model.hidden[0].linear.bias is None  # BN follows: no bias
    assert torch.equal(model.out.bias, torch.zeros(10))
    assert torch.equal(model.hidden[1].act.a_l, torch.full((8,), 0.2))


def test_init_model_on_a_conv_net_with_prelu() -> None:
    model = nn.Sequential(
        nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.PReLU(4), nn.Flatten(), nn.Linear(4 * 36, 5)
    )
    with torch.no_grad():
        model[2].weight.fill_(0.9)
    init_model_(model, "kaiming_normal", _gen(0))
    assert torch.equal(model[2].weight, torch.full((4,), 0.25))
    assert torch.equal(model[0].bias, torch.zeros(4))
    g = _gen(0)
    expected = torch.empty(4, 3, 3, 3)
    INITS.get("kaiming_normal")(expected, fan_in=27, fan_out=36, generator=g)
    assert torch.equal(model[0].weight, expected)


def test_init_model_refuses_unknown_parameters() -> None:
    model = nn.Sequential(nn.Embedding(5, 3), nn.Linear(3, 2))
    with pytest.raises(TypeError, match="'0.weight'"):
        init_model_(model, "kaiming_normal", _gen(0))


def test_unknown_init_raises_config_error() -> None:
    with pytest.raises(ConfigError, match="kaiming_normal"):
        init_model_(nn.Linear(3, 2), "kaiming", _gen(0))


def test_registered_model_has_a_description() -> None:
    assert "mlp" in MODELS and MODELS.describe("mlp")


# SeededDropout ---------------------------------------------------------------------------


def test_seeded_dropout_keeps_or_scales_and_drops_about_p() -> None:
    drop = SeededDropout(0.3, generator=_gen(0)).train()
    x = torch.rand(200_000) + 1.0  # strictly positive, so a dropped element is exactly 0
    y = drop(x)
    kept = y != 0
    torch.testing.assert_close(y[kept], x[kept] / 0.7)
    assert (1 - kept.float().mean().item()) == pytest.approx(0.3, abs=0.005)


def test_seeded_dropout_gradient_is_the_scaled_mask() -> None:
    drop = SeededDropout(0.5, generator=_gen(2)).train()
    x = torch.ones(1000, requires_grad=True)
    y = drop(x)
    y.sum().backward()
    torch.testing.assert_close(x.grad, y.detach())  # grad = mask / (1 - p) = y for x = 1
    assert set(x.grad.unique().tolist()) == {0.0, 2.0}


def test_seeded_dropout_identity_cases() -> None:
    x = torch.randn(4, 6)
    assert SeededDropout(0.0, generator=_gen(0)).train()(x) is x
    assert SeededDropout(0.5, generator=_gen(0)).eval()(x) is x


def test_seeded_dropout_leaves_the_global_rng_alone() -> None:
    state = torch.get_rng_state()
    SeededDropout(0.5, generator=_gen(0)).train()(torch.randn(10, 10, generator=_gen(1)))
    assert torch.equal(torch.get_rng_state(), state)


def test_seeded_dropout_without_generator_uses_the_global_rng() -> None:
    drop = SeededDropout(0.5).train()
    x = torch.ones(64)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(4)
        a = drop(x)
        torch.manual_seed(4)
        b = drop(x)
        c = drop(x)
    assert torch.equal(a, b)
    assert not torch.equal(b, c)


def test_seeded_dropout_mask_does_not_depend_on_dtype() -> None:
    x = torch.ones(100)
    a = SeededDropout(0.5, generator=_gen(3)).train()(x)
    b = SeededDropout(0.5, generator=_gen(3)).train()(x.double())
    assert torch.equal(a.double(), b)


@pytest.mark.parametrize("p", [-0.1, 1.0, 1.5])
def test_seeded_dropout_rejects_bad_p(p: float) -> None:
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        SeededDropout(p)


def test_set_dropout_generator_reaches_every_layer() -> None:
    model = nn.Sequential(SeededDropout(0.1), nn.Linear(2, 2), nn.Sequential(SeededDropout(0.2)))
    g = _gen(0)
    set_dropout_generator(model, g)
    assert model[0].generator is g and model[2][0].generator is g
    set_dropout_generator(model, None)
    assert model[0].generator is None and model[2][0].generator is None


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cpu_generator_drives_cuda_dropout_and_init() -> None:
    x = torch.ones(1000)
    cpu = SeededDropout(0.5, generator=_gen(0)).train()(x)
    gpu = SeededDropout(0.5, generator=_gen(0)).train()(x.cuda())
    assert gpu.device.type == "cuda" and torch.equal(gpu.cpu(), cpu)
    model = nn.Sequential(nn.Linear(6, 4), SReLU(4)).cuda()
    init_model_(model, "kaiming_normal", _gen(1))
    expected = nn.Sequential(nn.Linear(6, 4), SReLU(4))
    init_model_(expected, "kaiming_normal", _gen(1))
    assert torch.equal(model[0].weight.cpu(), expected[0].weight)
