"""Registries: decorator registration, duplicates rejected, unknown names with a hint."""

from __future__ import annotations

import pytest

import sparseflow  # noqa: F401  (fills the registries)
from sparseflow.errors import ConfigError
from sparseflow.registry import REGISTRIES, Registry


def test_register_get_and_meta() -> None:
    reg: Registry[object] = Registry("widget")

    @reg.register("alpha", note=1)
    def alpha() -> None:
        """Alpha widget. More text."""

    assert reg.get("alpha") is alpha
    assert reg.meta("alpha") == {"note": 1}
    assert reg.describe("alpha") == "Alpha widget. More text."
    assert "alpha" in reg and len(reg) == 1 and reg.names() == ["alpha"]


def test_duplicate_name_raises() -> None:
    reg: Registry[object] = Registry("widget")
    reg.register("a")(object())
    with pytest.raises(ValueError, match="duplicate widget name 'a'"):
        reg.register("a")(object())


def test_unknown_name_lists_valid_and_closest() -> None:
    with pytest.raises(ConfigError) as err:
        REGISTRIES["optimizers"].get("adamm")
    msg = str(err.value)
    assert "unknown optimizer 'adamm'" in msg
    assert "Did you mean 'adam'?" in msg
    assert "rmsprop" in msg and "\n" not in msg


@pytest.mark.parametrize("kind,expected", [
    ("optimizers", {"sgd", "momentum", "nesterov", "adagrad", "adam", "adamw", "rmsprop"}),
    ("maskers", {"random", "magnitude", "global_magnitude"}),
    ("schedules", {"constant", "step", "cosine"}),
    ("activations", {"relu", "leaky_relu", "prelu", "elu", "selu", "swish", "srelu",
                     "sigmoid", "tanh", "gelu"}),
    ("inits", {"kaiming_normal", "kaiming_uniform", "xavier_normal", "xavier_uniform"}),
    ("datasets", {"mnist1d", "digits", "fashion_mnist"}),
    ("models", {"mlp"}),
])
def test_builtin_components_registered(kind: str, expected: set[str]) -> None:
    assert expected <= set(REGISTRIES[kind].names())
    for name in REGISTRIES[kind].names():
        assert REGISTRIES[kind].describe(name), f"{kind}/{name} has no docstring"
