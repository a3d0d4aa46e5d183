"""Activations: each against a hand-written reference; PReLU/SReLU per-unit parameters."""

from __future__ import annotations

import math
from collections.abc import Callable

import pytest
import torch
from torch import Tensor
from torch.func import functional_call

import sparseflow.models  # noqa: F401  (registers the activations)
from sparseflow.models import SReLU
from sparseflow.registry import ACTIVATIONS

SELU_ALPHA = 1.6732632423543772
SELU_SCALE = 1.0507009873554805

# Written from the definitions, not by calling the torch modules under test.
REFERENCE: dict[str, Callable[[Tensor], Tensor]] = {
    "relu": lambda x: torch.where(x > 0, x, torch.zeros_like(x)),
    "leaky_relu": lambda x: torch.where(x > 0, x, 0.01 * x),
    "prelu": lambda x: torch.where(x > 0, x, 0.25 * x),
    "elu": lambda x: torch.where(x > 0, x, torch.exp(x) - 1),
    "selu": lambda x: SELU_SCALE * torch.where(x > 0, x, SELU_ALPHA * (torch.exp(x) - 1)),
    "swish": lambda x: x / (1 + torch.exp(-x)),
    "srelu": lambda x: torch.where(x > 0, x, 0.2 * x),  # at init: leaky ReLU 0.2, identity ≥ 0
    "sigmoid": lambda x: 1 / (1 + torch.exp(-x)),
    "tanh": lambda x: (torch.exp(x) - torch.exp(-x)) / (torch.exp(x) + torch.exp(-x)),
    "gelu": lambda x: 0.5 * x * (1 + torch.erf(x / math.sqrt(2))),
}


def test_every_registered_activation_has_a_reference() -> None:
    assert set(ACTIVATIONS.names()) == set(REFERENCE)
    for name in ACTIVATIONS.names():
        assert ACTIVATIONS.describe(name)


@pytest.mark.parametrize("name", sorted(REFERENCE))
@pytest.mark.parametrize("shape", [(6, 5), (3, 5, 4, 4)])
def test_forward_matches_reference(name: str, shape: tuple[int, ...]) -> None:
    x = torch.randn(shape, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * 3
    act = ACTIVATIONS.get(name)(shape[1]).double()
    torch.testing.assert_close(act(x), REFERENCE[name](x))


@pytest.mark.parametrize("name", ["prelu", "srelu"])
def test_learnable_activations_have_one_parameter_per_unit(name: str) -> None:
    act = ACTIVATIONS.get(name)(7)
    params = dict(act.named_parameters())
    assert params, f"{name} has no parameters"
    assert all(p.shape == (7,) for p in params.values())
    expected = {"weight"} if name == "prelu" else {"t_l", "a_l", "t_r", "a_r"}
    assert set(params) == expected


@pytest.mark.parametrize("name", ["prelu", "srelu"])
def test_per_unit_parameters_broadcast_over_dim_1(name: str) -> None:
    # Give channel c its own slope and check each channel separately, in a (B, C, H, W) input.
    c = 3
    act = ACTIVATIONS.get(name)(c).double()
    slopes = torch.tensor([0.1, 0.5, 0.9], dtype=torch.float64)
    with torch.no_grad():
        if name == "prelu":
            act.weight.copy_(slopes)
        else:
            act.a_l.copy_(slopes)
    x = -torch.rand(2, c, 4, 4, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    y = act(x)  # all inputs negative: y = slope_c * x on channel c (t_l = 0 for SReLU)
    for ch in range(c):
        torch.testing.assert_close(y[:, ch], slopes[ch] * x[:, ch])


def _srelu(t_l: list[float], a_l: list[float], t_r: list[float], a_r: list[float]) -> SReLU:
    act = SReLU(len(t_l)).double()
    with torch.no_grad():
        for p, v in zip((act.t_l, act.a_l, act.t_r, act.a_r), (t_l, a_l, t_r, a_r), strict=True):
            p.copy_(torch.tensor(v, dtype=torch.float64))
    return act


def test_srelu_hand_values() -> None:
    # One unit with t_l = -1, a_l = 0.5, t_r = 2, a_r = 3.
    act = _srelu([-1.0], [0.5], [2.0], [3.0])
    x = torch.tensor([[-3.0], [-1.0], [0.0], [1.5], [2.0], [4.0]], dtype=torch.float64)
    # -3 → -1 + 0.5·(-2) = -2;  -1 → -1 (left knee);  0, 1.5 → identity;  2 → 2;  4 → 2 + 3·2 = 8.
    expected = torch.tensor([[-2.0], [-1.0], [0.0], [1.5], [2.0], [8.0]], dtype=torch.float64)
    torch.testing.assert_close(act(x), expected)


def test_srelu_hand_gradients() -> None:
    act = _srelu([-1.0], [0.5], [2.0], [3.0])
    x = torch.tensor([[-3.0], [0.5], [4.0]], dtype=torch.float64, requires_grad=True)
    act(x).sum().backward()
    torch.testing.assert_close(x.grad, torch.tensor([[0.5], [1.0], [3.0]], dtype=torch.float64))
    # Left piece t_l + a_l (x - t_l): d/dt_l = 1 - a_l, d/da_l = x - t_l (only x = -3 is left).
    torch.testing.assert_close(act.t_l.grad, torch.tensor([0.5], dtype=torch.float64))
    torch.testing.assert_close(act.a_l.grad, torch.tensor([-2.0], dtype=torch.float64))
    # Right piece: d/dt_r = 1 - a_r = -2, d/da_r = x - t_r = 2 (only x = 4 is right).
    torch.testing.assert_close(act.t_r.grad, torch.tensor([-2.0], dtype=torch.float64))
    torch.testing.assert_close(act.a_r.grad, torch.tensor([2.0], dtype=torch.float64))


@pytest.mark.parametrize("shape", [(5, 4), (2, 4, 3)])
def test_srelu_gradcheck(shape: tuple[int, ...]) -> None:
    # Distinct per-unit parameters, including a_l < 0 and a_r < 1, so every partial is non-trivial.
    act = _srelu([-0.5, -1.0, 0.0, -0.2], [0.2, 0.5, 1.5, -0.3], [0.5, 1.0, 0.3, 2.0],
                 [0.7, 2.0, 1.0, 0.1])
    x = torch.randn(shape, generator=torch.Generator().manual_seed(3), dtype=torch.float64) * 2
    # Keep x away from the knees, where f is not differentiable and finite differences straddle.
    view = (1, -1, *([1] * (len(shape) - 2)))
    for t in (act.t_l, act.t_r):
        x = torch.where((x - t.detach().view(view)).abs() < 1e-3, x + 0.01, x)
    names = ("t_l", "a_l", "t_r", "a_r")
    params = tuple(getattr(act, n).detach().clone().requires_grad_(True) for n in names)

    def f(x: Tensor, *ps: Tensor) -> Tensor:
        # The module's own forward, with its four parameters supplied as gradcheck inputs.
        return functional_call(act, dict(zip(names, ps, strict=True)), (x,))

    assert torch.autograd.gradcheck(f, (x.requires_grad_(True), *params), eps=1e-6, atol=1e-6)


def test_srelu_init_and_reset_are_deterministic() -> None:
    act = SReLU(4)
    expected = {"t_l": 0.0, "a_l": 0.2, "t_r": 1.0, "a_r": 1.0}
    with torch.no_grad():
        for p in act.parameters():
            p.add_(1.234)
    act.reset_parameters()
    for name, value in expected.items():
        assert torch.equal(getattr(act, name), torch.full((4,), value))
