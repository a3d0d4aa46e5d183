"""Weight initializations: fans, scales against theory, generator-only randomness."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

import sparseflow.models  # noqa: F401  (registers the inits)
from sparseflow.errors import ConfigError
from sparseflow.models import fans, init_std
from sparseflow.registry import INITS

NAMES = ["kaiming_normal", "kaiming_uniform", "xavier_normal", "xavier_uniform"]


def _draw(name: str, shape: tuple[int, ...], seed: int, fan_in: int, fan_out: int) -> torch.Tensor:
    w = torch.empty(shape)
    g = torch.Generator().manual_seed(seed)
    INITS.get(name)(w, fan_in=fan_in, fan_out=fan_out, generator=g)
    return w


def test_registry_holds_exactly_the_documented_inits() -> None:
    assert sorted(INITS.names()) == sorted(NAMES)
    for name in NAMES:
        assert INITS.describe(name)  # `sparseflow list inits` shows a line


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("kaiming_normal", math.sqrt(2 / 300)),
        ("kaiming_uniform", math.sqrt(2 / 300)),
        ("xavier_normal", math.sqrt(2 / (300 + 100))),
        ("xavier_uniform", math.sqrt(2 / (300 + 100))),
    ],
)
def test_init_std_is_the_textbook_formula(name: str, expected: float) -> None:
    assert init_std(name, 300, 100) == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("name", NAMES)
def test_empirical_std_matches_theory(name: str) -> None:
    # 200k draws: the sample std is within ~0.3% of the truth; 2% leaves a wide margin.
    w = _draw(name, (400, 500), seed=0, fan_in=500, fan_out=400)
    theory = init_std(name, 500, 400)
    assert w.std().item() == pytest.approx(theory, rel=0.02)
    assert abs(w.mean().item()) < 0.01 * theory
    if name.endswith("uniform"):
        bound = theory * math.sqrt(3)
        assert w.abs().max().item() <= bound
        assert w.abs().max().item() > 0.99 * bound


@pytest.mark.parametrize("name", NAMES)
def test_same_seed_same_tensor_and_other_seed_differs(name: str) -> None:
    a = _draw(name, (30, 20), seed=7, fan_in=20, fan_out=30)
    b = _draw(name, (30, 20), seed=7, fan_in=20, fan_out=30)
    c = _draw(name, (30, 20), seed=8, fan_in=20, fan_out=30)
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


@pytest.mark.parametrize("name", NAMES)
def test_inits_leave_the_global_rng_alone(name: str) -> None:
    state = torch.get_rng_state()
    _draw(name, (50, 50), seed=0, fan_in=50, fan_out=50)
    assert torch.equal(torch.get_rng_state(), state)


def test_explicit_fans_set_the_scale_not_the_weight_shape() -> None:
    # A (200, 200) weight initialized with a dense twin's fans: the scale follows the fans given.
    small = _draw("kaiming_normal", (200, 200), seed=0, fan_in=100, fan_out=200)
    large = _draw("kaiming_normal", (200, 200), seed=0, fan_in=400, fan_out=200)
    assert small.std().item() == pytest.approx(math.sqrt(2 / 100), rel=0.03)
    assert large.std().item() == pytest.approx(math.sqrt(2 / 400), rel=0.03)
    # Same generator stream, so the tensors are exact rescalings of each other (ratio 2).
    torch.testing.assert_close(small, 2 * large)


def test_kaiming_ignores_fan_out_xavier_does_not() -> None:
    assert init_std("kaiming_normal", 64, 10) == init_std("kaiming_normal", 64, 1000)
    assert init_std("xavier_normal", 64, 10) > init_std("xavier_normal", 64, 1000)


def test_init_std_unknown_name_raises_with_valid_names() -> None:
    with pytest.raises(ConfigError, match="kaiming_normal"):
        init_std("kaiming_norml", 10, 10)


@pytest.mark.parametrize("bad", [(0, 10), (10, 0), (-1, 5)])
def test_non_positive_fans_raise(bad: tuple[int, int]) -> None:
    with pytest.raises(ValueError, match="fans must be positive"):
        _draw("xavier_uniform", (3, 3), seed=0, fan_in=bad[0], fan_out=bad[1])


@pytest.mark.parametrize(
    "module",
    [
        nn.Linear(7, 3),
        nn.Conv1d(4, 6, kernel_size=5),
        nn.Conv2d(3, 8, kernel_size=(3, 2)),
        nn.Conv2d(4, 8, kernel_size=3, groups=2),
        nn.Conv3d(2, 5, kernel_size=2),
    ],
)
def test_fans_match_torch(module: nn.Module) -> None:
    expected = nn.init._calculate_fan_in_and_fan_out(module.weight)
    assert fans(module.weight) == expected


def test_fans_by_hand() -> None:
    assert fans(torch.empty(3, 7)) == (7, 3)
    assert fans(torch.empty(8, 3, 3, 2)) == (3 * 6, 8 * 6)


def test_fans_of_a_vector_raise() -> None:
    with pytest.raises(ValueError, match="at least 2 dimensions"):
        fans(torch.empty(5))
