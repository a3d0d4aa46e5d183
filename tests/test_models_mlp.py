"""The MLP family: shapes, stable parameter names, skips, BatchNorm, seeded dropout."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import sparseflow.models  # noqa: F401  (registers models, activations, inits)
from sparseflow.config import ModelConfig
from sparseflow.errors import ConfigError
from sparseflow.models import SeededDropout, build_model, set_dropout_generator
from sparseflow.sparsity.mask import prunable_parameters


def _build(input_shape: tuple[int, ...] = (40,), classes: int = 10, *, seed: int = 0,
           dropout: float = 0.0, **cfg: object) -> nn.Module:
    model_cfg = ModelConfig(**{"width": 16, "hidden_layers": 3, **cfg})
    return build_model(model_cfg, input_shape, classes, dropout=dropout,
                       generator=torch.Generator().manual_seed(seed))


def _x(*shape: int, seed: int = 1) -> torch.Tensor:
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("input_shape", [(40,), (1, 28, 28)])
def test_forward_shape(input_shape: tuple[int, ...]) -> None:
    model = _build(input_shape)
    assert model(_x(5, *input_shape)).shape == (5, 10)
    assert model.hidden[0].linear.in_features == torch.Size(input_shape).numel()


def test_parameter_names_in_input_to_output_order() -> None:
    model = _build(hidden_layers=2, batchnorm=True, activation="prelu")
    # With BatchNorm the hidden linear layers have no bias (BN's shift replaces it).
    assert [n for n, _ in model.named_parameters()] == [
        "hidden.0.linear.weight",
        "hidden.0.norm.weight", "hidden.0.norm.bias", "hidden.0.act.weight",
        "hidden.1.linear.weight",
        "hidden.1.norm.weight", "hidden.1.norm.bias", "hidden.1.act.weight",
        "out.weight", "out.bias",
    ]  # fmt: skip
    plain = _build(hidden_layers=2, activation="prelu")
    assert [n for n, _ in plain.named_parameters()] == [
        "hidden.0.linear.weight", "hidden.0.linear.bias", "hidden.0.act.weight",
        "hidden.1.linear.weight", "hidden.1.linear.bias", "hidden.1.act.weight",
        "out.weight", "out.bias",
    ]  # fmt: skip


@pytest.mark.parametrize("activation", ["relu", "prelu", "srelu"])
def test_names_do_not_depend_on_width(activation: str) -> None:
    # SC-SDC pairs a wide sparse net with a narrow dense twin by parameter name.
    wide = _build(width=32, activation=activation, batchnorm=True, skip=True)
    narrow = _build(width=8, activation=activation, batchnorm=True, skip=True)
    assert list(wide.state_dict()) == list(narrow.state_dict())
    assert wide.hidden[1].linear.weight.shape == (32, 32)
    assert narrow.hidden[1].linear.weight.shape == (8, 8)


@pytest.mark.parametrize("hidden_layers", [1, 2, 4])
def test_prunable_weights_are_exactly_the_linear_weights(hidden_layers: int) -> None:
    model = _build(hidden_layers=hidden_layers, batchnorm=True, activation="srelu")
    shapes = {n: tuple(p.shape) for n, p in prunable_parameters(model).items()}
    expected = {"hidden.0.linear.weight": (16, 40)}
    expected |= {f"hidden.{i}.linear.weight": (16, 16) for i in range(1, hidden_layers)}
    expected["out.weight"] = (10, 16)
    assert shapes == expected
    assert list(shapes) == list(expected)  # input → output order


def test_bias_flag() -> None:
    model = _build(bias=False)
    assert not any(n.endswith("linear.bias") or n == "out.bias" for n, _ in
                   model.named_parameters())
    assert _build(bias=True).out.bias is not None


def _hand_forward(model: nn.Module, x: torch.Tensor, *, skip: bool) -> torch.Tensor:
    """relu MLP without BN computed from the model's own weights: h ← [h +] relu(h Wᵀ + b)."""
    h = x.flatten(1)
    for i, block in enumerate(model.hidden):
        y = F.relu(h @ block.linear.weight.T + block.linear.bias)
        h = h + y if (skip and i > 0) else y
    return h @ model.out.weight.T + model.out.bias


def test_skip_connections_follow_the_formula() -> None:
    with_skip = _build(skip=True)
    without = _build(skip=False)
    without.load_state_dict(with_skip.state_dict())  # same names → same weights
    x = _x(6, 40)
    torch.testing.assert_close(with_skip(x), _hand_forward(with_skip, x, skip=True))
    torch.testing.assert_close(without(x), _hand_forward(without, x, skip=False))
    assert not torch.allclose(with_skip(x), without(x))
    # The first block maps d → width and is never residual.
    assert [b.residual for b in with_skip.hidden] == [False, True, True]


def test_batchnorm_present_or_absent() -> None:
    assert sum(isinstance(m, nn.BatchNorm1d) for m in _build(batchnorm=True).modules()) == 3
    assert not any(isinstance(m, nn.BatchNorm1d) for m in _build(batchnorm=False).modules())


def test_batchnorm_forward_in_train_mode_by_hand() -> None:
    model = _build(batchnorm=True, hidden_layers=2).train()
    x = _x(8, 40)
    h = x
    for block in model.hidden:
        z = h @ block.linear.weight.T  # (B, W); no bias before BN
        z = (z - z.mean(0)) / torch.sqrt(z.var(0, unbiased=False) + block.norm.eps)
        h = F.relu(z)  # BN weight 1, bias 0 after init
    expected = h @ model.out.weight.T + model.out.bias
    torch.testing.assert_close(model(x), expected, rtol=1e-5, atol=1e-5)
    assert model.hidden[0].norm.num_batches_tracked.item() == 1


def test_dropout_absent_when_zero_and_never_nn_dropout() -> None:
    assert not any(isinstance(m, SeededDropout) for m in _build(dropout=0.0).modules())
    model = _build(dropout=0.3)
    assert sum(isinstance(m, SeededDropout) for m in model.modules()) == 3
    assert not any(isinstance(m, nn.Dropout) for m in model.modules())


def _train_output(model: nn.Module, x: torch.Tensor, seed: int) -> torch.Tensor:
    set_dropout_generator(model, torch.Generator().manual_seed(seed))
    return model.train()(x)


def test_dropout_is_driven_by_its_generator() -> None:
    model = _build(dropout=0.5)
    x = _x(6, 40)
    a, b, c = (_train_output(model, x, s) for s in (1, 1, 2))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    model.eval()
    assert torch.equal(model(x), model(x))


def test_dropout_in_eval_mode_is_the_identity() -> None:
    dropped = _build(dropout=0.5).eval()
    plain = _build(dropout=0.0).eval()
    x = _x(6, 40)
    torch.testing.assert_close(dropped(x), plain(x))  # same seed → same weights


def test_builder_rejects_bad_arguments() -> None:
    with pytest.raises(ConfigError, match="dropout"):
        _build(dropout=1.0)
    with pytest.raises(ConfigError, match="num_classes"):
        _build(classes=0)
    with pytest.raises(ConfigError, match="input shape"):
        _build(input_shape=())
