"""The cnn family: channels, pooling, stable names, skips by hand, biases, errors."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import sparseflow.models  # noqa: F401  (registers models, activations, inits)
from sparseflow.config import ModelConfig
from sparseflow.errors import ConfigError
from sparseflow.models import SeededDropout, build_model, set_dropout_generator
from sparseflow.prunable import prunable_parameters
from sparseflow.registry import MODELS


def _build(input_shape: tuple[int, ...] = (3, 32, 32), classes: int = 10, *, seed: int = 0,
           dropout: float = 0.0, **cfg: object) -> nn.Module:
    model_cfg = ModelConfig(**{"name": "cnn", "width": 4, **cfg})
    return build_model(model_cfg, input_shape, classes, dropout=dropout,
                       generator=torch.Generator().manual_seed(seed))


def _x(*shape: int, seed: int = 1) -> torch.Tensor:
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("input_shape,pools", [
    ((3, 32, 32), [True] * 5),                        # 32 → 16 → 8 → 4 → 2 → 1
    ((1, 28, 28), [True, True, True, True, False]),   # 28 → 14 → 7 → 3 → 1
    ((1, 8, 8), [True, True, True, False, False]),    # 8 → 4 → 2 → 1
])
def test_forward_shape_and_pooling_while_spatial_size_allows(
        input_shape: tuple[int, ...], pools: list[bool]) -> None:
    model = _build(input_shape)
    assert model(_x(3, *input_shape)).shape == (3, 10)
    assert [isinstance(b.pool, nn.MaxPool2d) for b in model.convs] == pools
    assert model.spatial_out == (1, 1)


def test_global_pooling_makes_the_classifier_resolution_independent() -> None:
    model = _build((3, 32, 32))
    assert model(_x(2, 3, 64, 64)).shape == (2, 10)  # 2×2 map after five pools, averaged
    assert _build((3, 64, 64)).out.weight.shape == model.out.weight.shape


@pytest.mark.parametrize("width,expected", [(32, (32, 64, 64, 128, 128)), (7, (7, 14, 14, 28, 28)),
                                            (64, (64, 128, 128, 256, 256))])
def test_channels_scale_with_width(width: int, expected: tuple[int, ...]) -> None:
    with torch.device("meta"):  # shapes only; this is also how the dense twin is built
        model = MODELS.get("cnn")(ModelConfig(name="cnn", width=width), (3, 32, 32), 10, 0.0)
    assert tuple(b.conv.out_channels for b in model.convs) == expected
    assert model.out.in_features == expected[-1]


def test_parameter_names_in_order() -> None:
    model = _build(batchnorm=True, activation="prelu")
    names = [n for n, _ in model.named_parameters()]
    expected = []
    for i in range(5):
        expected += [f"convs.{i}.conv.weight", f"convs.{i}.norm.weight", f"convs.{i}.norm.bias",
                     f"convs.{i}.act.weight"]
    assert names == [*expected, "out.weight", "out.bias"]


@pytest.mark.parametrize("activation", ["relu", "prelu", "srelu"])
def test_names_do_not_depend_on_width(activation: str) -> None:
    kw = {"activation": activation, "batchnorm": True, "skip": True}
    wide, narrow = _build(width=12, **kw), _build(width=5, **kw)
    assert list(wide.state_dict()) == list(narrow.state_dict())
    assert wide.convs[2].conv.weight.shape == (24, 24, 3, 3)
    assert narrow.convs[2].conv.weight.shape == (10, 10, 3, 3)


def test_prunable_weights_are_the_convs_and_the_classifier() -> None:
    model = _build((1, 28, 28), width=3, batchnorm=True, activation="srelu")
    shapes = {n: tuple(p.shape) for n, p in prunable_parameters(model).items()}
    assert shapes == {
        "convs.0.conv.weight": (3, 1, 3, 3), "convs.1.conv.weight": (6, 3, 3, 3),
        "convs.2.conv.weight": (6, 6, 3, 3), "convs.3.conv.weight": (12, 6, 3, 3),
        "convs.4.conv.weight": (12, 12, 3, 3), "out.weight": (10, 12),
    }  # fmt: skip
    assert list(shapes)[-1] == "out.weight"  # input → output order


@pytest.mark.parametrize("bias,batchnorm,conv_bias,out_bias", [
    (True, False, True, True), (True, True, False, True), (False, False, False, False),
])
def test_bias_rule(bias: bool, batchnorm: bool, conv_bias: bool, out_bias: bool) -> None:
    model = _build(bias=bias, batchnorm=batchnorm)
    # A conv bias right before BatchNorm would be cancelled by its mean subtraction.
    assert all((b.conv.bias is not None) == conv_bias for b in model.convs)
    assert (model.out.bias is not None) == out_bias


def _hand_forward(model: nn.Module, x: torch.Tensor, residual: set[int]) -> torch.Tensor:
    """relu CNN without BN from the model's own weights: h ← pool([h +] relu(conv(h)))."""
    h = x
    for i, block in enumerate(model.convs):
        y = F.relu(F.conv2d(h, block.conv.weight, block.conv.bias, padding=1))
        if i in residual:
            y = h + y
        h = F.max_pool2d(y, 2) if min(y.shape[-2:]) >= 2 else y
    return h.mean(dim=(2, 3)) @ model.out.weight.T + model.out.bias


def test_skip_connections_follow_the_formula() -> None:
    with_skip, without = _build((1, 8, 8), skip=True), _build((1, 8, 8), skip=False)
    without.load_state_dict(with_skip.state_dict())  # same names → same weights
    x = _x(4, 1, 8, 8)
    torch.testing.assert_close(with_skip(x), _hand_forward(with_skip, x, {2, 4}))
    torch.testing.assert_close(without(x), _hand_forward(without, x, set()))
    assert not torch.allclose(with_skip(x), without(x))
    # Residual exactly where input and output channels are equal by construction (2w→2w,
    # 4w→4w); never the first block, even when the input has as many channels as the width.
    assert [b.residual for b in _build((4, 8, 8), width=4, skip=True).convs] == [
        False, False, True, False, True]


def test_batchnorm_present_or_absent() -> None:
    assert sum(isinstance(m, nn.BatchNorm2d) for m in _build(batchnorm=True).modules()) == 5
    assert not any(isinstance(m, nn.BatchNorm2d) for m in _build(batchnorm=False).modules())


def test_seeded_dropout_in_every_block() -> None:
    model = _build(dropout=0.3)
    assert sum(isinstance(m, SeededDropout) for m in model.modules()) == 5
    assert not any(isinstance(m, nn.Dropout) for m in model.modules())
    x = _x(4, 3, 32, 32)
    outs = []
    for seed in (1, 1, 2):
        set_dropout_generator(model, torch.Generator().manual_seed(seed))
        outs.append(model.train()(x))
    assert torch.equal(outs[0], outs[1]) and not torch.equal(outs[0], outs[2])


@pytest.mark.parametrize("activation", ["relu", "prelu", "srelu", "swish"])
def test_every_parameter_is_initialized_from_the_generator(activation: str) -> None:
    kw = {"activation": activation, "batchnorm": True, "skip": True}
    a, b, c = (_build(seed=s, **kw).state_dict() for s in (3, 3, 4))
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(a["convs.0.conv.weight"], c["convs.0.conv.weight"])
    w = a["convs.1.conv.weight"]  # kaiming normal: std √(2 / fan_in), fan_in = 4·3·3
    assert w.std().item() == pytest.approx((2 / 36) ** 0.5, rel=0.2)


@pytest.mark.parametrize("input_shape", [(40,), (8, 8), (1, 0, 8)])
def test_flat_input_names_the_fix(input_shape: tuple[int, ...]) -> None:
    with pytest.raises(ConfigError, match=r"\(C, H, W\).*model\.name=mlp"):
        _build(input_shape)


def test_builder_rejects_bad_arguments() -> None:
    with pytest.raises(ConfigError, match="depth"):
        _build(depth=16)
    with pytest.raises(ConfigError, match="num_classes"):
        _build(classes=0)
    with pytest.raises(ConfigError, match="dropout"):
        _build(dropout=1.0)
