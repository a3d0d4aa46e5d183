"""The wrn (WRN-d-k, basic blocks) and wrn50 (bottleneck Wide ResNet-50) families."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import sparseflow.models  # noqa: F401  (registers models, activations, inits)
from sparseflow.config import ModelConfig
from sparseflow.errors import ConfigError
from sparseflow.models import SeededDropout, WideBasicBlock, build_model
from sparseflow.prunable import prunable_parameters
from sparseflow.registry import MODELS

SHAPES = [(3, 32, 32), (1, 28, 28), (1, 8, 8)]
RESNET = {"batchnorm": True, "skip": True}


def _cfg(name: str, **kw: object) -> ModelConfig:
    return ModelConfig(**{"name": name, "width": 4, **RESNET, **kw})


def _build(name: str, input_shape: tuple[int, ...] = (3, 32, 32), classes: int = 10, *,
           seed: int = 0, dropout: float = 0.0, **kw: object) -> nn.Module:
    return build_model(_cfg(name, **kw), input_shape, classes, dropout=dropout,
                       generator=torch.Generator().manual_seed(seed))


def _meta(name: str, input_shape: tuple[int, ...] = (3, 32, 32), classes: int = 10,
          **kw: object) -> nn.Module:
    """Shapes only (no memory, no draws): the way the dense twin is built."""
    with torch.device("meta"):
        return MODELS.get(name)(_cfg(name, **kw), input_shape, classes, 0.0)


def _numel(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _x(*shape: int, seed: int = 1) -> torch.Tensor:
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("name", ["wrn", "wrn50"])
@pytest.mark.parametrize("input_shape", SHAPES)
def test_forward_shape(name: str, input_shape: tuple[int, ...]) -> None:
    kw = {"depth": 10} if name == "wrn" else {}
    model = _build(name, input_shape, classes=7, **kw)
    assert model(_x(3, *input_shape)).shape == (3, 7)


@pytest.mark.parametrize("name", ["wrn", "wrn50"])
@pytest.mark.parametrize("missing", [["batchnorm"], ["skip"], ["batchnorm", "skip"]])
def test_batchnorm_and_skip_are_required(name: str, missing: list[str]) -> None:
    with pytest.raises(ConfigError) as err:
        _build(name, **dict.fromkeys(missing, False))
    for field in missing:
        assert f"model.{field}=true" in str(err.value)
    # None (the default) means the family's default: on.
    model = _build(name, **dict.fromkeys(missing, None))
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())


@pytest.mark.parametrize("name", ["wrn", "wrn50"])
def test_flat_input_and_bad_depth_are_config_errors(name: str) -> None:
    with pytest.raises(ConfigError, match=r"\(C, H, W\)"):
        _build(name, (40,))
    with pytest.raises(ConfigError, match="6n \\+ 4" if name == "wrn" else "fixed depth of 50"):
        _build(name, depth=12)


@pytest.mark.parametrize("depth,n", [(None, 2), (10, 1), (22, 3), (28, 4)])
def test_wrn_depth_is_6n_plus_4(depth: int | None, n: int) -> None:
    model = _meta("wrn", depth=depth)
    assert [len(stage) for stage in model.stages] == [n, n, n]
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d) and m.kernel_size == (3, 3)]
    # d = 6n + 4 counts the stem, 3 stages × n blocks × 2 convs, the classifier and the two
    # projections; the 3×3 convs alone are the stem and the 6n block convs.
    assert len(convs) == 6 * n + 1 == (depth or 16) - 3


def test_wrn_prunable_layers_and_shapes() -> None:
    model = _build("wrn", (1, 8, 8), width=5, depth=10)
    shapes = {n: tuple(p.shape) for n, p in prunable_parameters(model).items()}
    assert shapes == {
        "stem.weight": (5, 1, 3, 3),
        "stages.0.0.conv1.weight": (5, 5, 3, 3), "stages.0.0.conv2.weight": (5, 5, 3, 3),
        "stages.1.0.conv1.weight": (10, 5, 3, 3), "stages.1.0.conv2.weight": (10, 10, 3, 3),
        "stages.1.0.shortcut.weight": (10, 5, 1, 1),
        "stages.2.0.conv1.weight": (20, 10, 3, 3), "stages.2.0.conv2.weight": (20, 20, 3, 3),
        "stages.2.0.shortcut.weight": (20, 10, 1, 1),
        "out.weight": (10, 20),
    }  # fmt: skip
    # No conv bias (each conv output meets a BatchNorm); the classifier's follows cfg.bias.
    assert all(m.bias is None for m in model.modules() if isinstance(m, nn.Conv2d))
    assert model.out.bias is not None and _build("wrn", bias=False).out.bias is None


@pytest.mark.parametrize("name", ["wrn", "wrn50"])
@pytest.mark.parametrize("activation", ["relu", "prelu", "srelu"])
def test_names_do_not_depend_on_width(name: str, activation: str) -> None:
    wide, narrow = _meta(name, width=11, activation=activation), _meta(name, width=6,
                                                                       activation=activation)
    assert list(wide.state_dict()) == list(narrow.state_dict())
    assert list(prunable_parameters(wide)) == list(prunable_parameters(narrow))
    # Every prunable layer is smaller in the narrower net: everything scales with the width.
    pw, pn = prunable_parameters(wide), prunable_parameters(narrow)
    assert all(pn[k].numel() < pw[k].numel() for k in pw)


def _original_wrn_params(depth: int, k: int, c: int = 3, classes: int = 10) -> int:
    """Parameter count of the authors' WRN-d-k (16-channel stem), counted by hand."""
    n, total, c_in = (depth - 4) // 6, c * 16 * 9, 16
    for s in range(3):
        out = 16 * k * 2**s
        for j in range(n):
            ci = c_in if j == 0 else out
            total += 2 * ci + ci * out * 9 + 2 * out + out * out * 9  # BN, conv, BN, conv
            total += ci * out if ci != out else 0  # 1×1 projection
        c_in = out
    return total + 2 * c_in + c_in * classes + classes  # final BN, classifier


def test_wrn_at_k1_is_the_original_and_k10_differs_only_by_the_stem() -> None:
    assert _original_wrn_params(28, 10) == 36_479_194  # the published WRN-28-10 count
    for depth in (16, 40):
        assert _numel(_meta("wrn", width=16, depth=depth)) == _original_wrn_params(depth, 1)
    # Stem 3→160 instead of 3→16; stage 1 opens with conv 160→160 (identity shortcut) instead
    # of conv 16→160 plus a 1×1 projection 16→160 and a 16-channel BN.
    delta = 3 * 144 * 9 + 144 * 160 * 9 - 16 * 160 + 2 * 144
    assert _numel(_meta("wrn", width=160, depth=28)) == 36_479_194 + delta == 36_688_170


def _bn(x: torch.Tensor) -> torch.Tensor:
    """Training-mode BatchNorm2d at init (weight 1, bias 0): batch statistics per channel."""
    return F.batch_norm(x, None, None, training=True, eps=1e-5)


@pytest.mark.parametrize("in_ch,out_ch,stride", [(6, 6, 1), (6, 12, 2)])
def test_wrn_block_follows_the_preactivation_formula(in_ch: int, out_ch: int,
                                                     stride: int) -> None:
    torch.manual_seed(0)
    block = WideBasicBlock(in_ch, out_ch, stride, activation_name="relu", dropout=0.0).train()
    x = _x(4, in_ch, 8, 8)
    o = F.relu(_bn(x))
    y = F.conv2d(F.relu(_bn(F.conv2d(o, block.conv1.weight, stride=stride, padding=1))),
                 block.conv2.weight, padding=1)
    skip = x if block.shortcut is None else F.conv2d(o, block.shortcut.weight, stride=stride)
    torch.testing.assert_close(block(x), y + skip)
    assert (block.shortcut is None) == (in_ch == out_ch and stride == 1)


def test_wrn_dropout_between_the_convs() -> None:
    model = _build("wrn", depth=16, dropout=0.3)
    assert sum(isinstance(m, SeededDropout) for m in model.modules()) == 6
    assert all(isinstance(b.drop, SeededDropout) for s in model.stages for b in s)


def test_wrn50_at_width_128_is_wide_resnet50_2_with_a_cifar_stem() -> None:
    model = _meta("wrn50", width=128)
    # torchvision's wide_resnet50_2 has 68,883,240 parameters (7×7 stem 3→64, 1000 classes);
    # ours: 3×3 stem and 10 classes.
    assert _numel(model) == 68_883_240 - 3 * 64 * 49 + 3 * 64 * 9 - (2048 + 1) * 990
    params = prunable_parameters(model)
    assert len(params) == 54  # ResNet-50: 49 + 4 projections, stem conv, classifier
    for s, (n, inner, out) in enumerate([(3, 128, 256), (4, 256, 512), (6, 512, 1024),
                                         (3, 1024, 2048)]):
        assert len(model.stages[s]) == n
        assert params[f"stages.{s}.0.conv2.weight"].shape == (inner, inner, 3, 3)
        assert params[f"stages.{s}.{n - 1}.conv3.weight"].shape == (out, inner, 1, 1)
        assert model.stages[s][0].conv2.stride == ((1, 1) if s == 0 else (2, 2))
    assert params["stages.0.0.shortcut.conv.weight"].shape == (256, 64, 1, 1)
    assert params["stem.conv.weight"].shape == (64, 3, 3, 3)


def test_wrn50_tiny_width_and_biases() -> None:
    model = _build("wrn50", width=4)
    assert _numel(model) < 100_000  # testable on a CPU
    assert model.stem.conv.out_channels == 2 and model.out.in_features == 64
    assert all(m.bias is None for m in model.modules() if isinstance(m, nn.Conv2d))
    assert _build("wrn50", width=3).stem.conv.out_channels == 2  # ⌈3/2⌉
    block = model.stages[1][1]  # identity shortcut: out = act3(norm3(conv3(…)) + x)
    assert isinstance(block.shortcut, nn.Identity)
    assert _build("wrn50", depth=50).out.weight.shape == (10, 64)


@pytest.mark.parametrize("name", ["wrn", "wrn50"])
@pytest.mark.parametrize("activation", ["prelu", "srelu"])
def test_same_generator_same_weights(name: str, activation: str) -> None:
    # init_model_ knows every parameter (it raises TypeError otherwise) and draws from the
    # generator only.
    a, b, c = (_build(name, seed=s, activation=activation).state_dict() for s in (2, 2, 3))
    assert all(torch.equal(a[k], b[k]) for k in a)
    key = "out.weight"
    assert not torch.equal(a[key], c[key])
    norms = [k for k in a if k.endswith("norm1.weight")]
    assert norms and all(torch.equal(a[k], torch.ones_like(a[k])) for k in norms)
