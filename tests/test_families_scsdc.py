"""SC-SDC on the convolutional families: per-layer counts by hand, errors, `sparseflow pair`."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

import sparseflow  # noqa: F401  (fills the registries)
from sparseflow.config import ModelConfig
from sparseflow.errors import ConfigError
from sparseflow.models import build_model
from sparseflow.registry import MODELS
from sparseflow.scsdc import same_capacity_counts

from tests.test_cli import _assert_one_line_error, _run

RESNET = {"batchnorm": True, "skip": True}


def _sparse(name: str, width: int, input_shape: tuple[int, ...] = (3, 32, 32),
            **kw: object) -> nn.Module:
    cfg = ModelConfig(name=name, width=width, **kw)
    return build_model(cfg, input_shape, 10, generator=torch.Generator().manual_seed(0))


def _twin(name: str, width: int, input_shape: tuple[int, ...] = (3, 32, 32),
          **kw: object) -> nn.Module:
    """The dense twin as training builds it: on the meta device."""
    with torch.device("meta"):
        return MODELS.get(name)(ModelConfig(name=name, width=width, **kw), input_shape, 10, 0.0)


def test_cnn_per_layer_counts_with_odd_widths() -> None:
    kw = {"batchnorm": True, "skip": True, "activation": "prelu"}
    counts = same_capacity_counts(_sparse("cnn", 13, **kw), _twin("cnn", 5, **kw))
    # Dense channels (5, 10, 10, 20, 20): out_D · in_D · 3 · 3 per conv, then 10 · 20.
    assert counts == {
        "convs.0.conv.weight": 5 * 3 * 9, "convs.1.conv.weight": 10 * 5 * 9,
        "convs.2.conv.weight": 10 * 10 * 9, "convs.3.conv.weight": 20 * 10 * 9,
        "convs.4.conv.weight": 20 * 20 * 9, "out.weight": 10 * 20,
    }  # fmt: skip


def test_wrn_per_layer_counts_with_odd_widths() -> None:
    counts = same_capacity_counts(_sparse("wrn", 11, (1, 8, 8), depth=10, **RESNET),
                                  _twin("wrn", 7, (1, 8, 8), depth=10, **RESNET))
    # Dense stage channels (7, 14, 28); stem 1 → 7; projections 1×1.
    assert counts == {
        "stem.weight": 7 * 1 * 9,
        "stages.0.0.conv1.weight": 7 * 7 * 9, "stages.0.0.conv2.weight": 7 * 7 * 9,
        "stages.1.0.conv1.weight": 14 * 7 * 9, "stages.1.0.conv2.weight": 14 * 14 * 9,
        "stages.1.0.shortcut.weight": 14 * 7,
        "stages.2.0.conv1.weight": 28 * 14 * 9, "stages.2.0.conv2.weight": 28 * 28 * 9,
        "stages.2.0.shortcut.weight": 28 * 14,
        "out.weight": 10 * 28,
    }  # fmt: skip


def test_wrn50_per_layer_counts_with_odd_widths() -> None:
    counts = same_capacity_counts(_sparse("wrn50", 5, **RESNET), _twin("wrn50", 3, **RESNET))
    assert len(counts) == 54
    # Dense: stem ⌈3/2⌉ = 2, inner (3, 6, 12, 24), outputs (6, 12, 24, 48).
    assert counts["stem.conv.weight"] == 2 * 3 * 9
    assert counts["stages.0.0.conv1.weight"] == 3 * 2
    assert counts["stages.0.0.shortcut.conv.weight"] == 6 * 2
    assert counts["stages.2.3.conv2.weight"] == 12 * 12 * 9
    assert counts["stages.3.0.shortcut.conv.weight"] == 48 * 24
    assert counts["stages.3.2.conv3.weight"] == 48 * 24
    assert counts["out.weight"] == 10 * 48


@pytest.mark.parametrize("name,kw,first", [
    ("cnn", {}, "convs.0.conv.weight"),
    ("wrn", {"depth": 10, **RESNET}, "stem.weight"),
    ("wrn50", RESNET, "stem.conv.weight"),
])
def test_dense_wider_than_sparse_names_the_layer(name: str, kw: dict, first: str) -> None:
    with pytest.raises(ConfigError, match=f"'{first}'.*must not exceed the sparse width"):
        same_capacity_counts(_sparse(name, 4, **kw), _twin(name, 6, **kw))


def test_pair_cli_on_a_cnn_with_digits(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = _run(["pair", "--sparse-width", "9", "--dense-width", "4",
                           "--set", "model.name=cnn", "--set", "data.name=digits", "--json"],
                          capsys)
    assert code == 0, err
    data = json.loads(out)
    layers = {row["name"]: row for row in data["layers"]}
    # digits: 1×8×8 inputs, 10 classes. Dense channels (4, 8, 8, 16, 16), sparse (9, 18, …).
    dense = {"convs.0.conv.weight": 4 * 1 * 9, "convs.1.conv.weight": 8 * 4 * 9,
             "convs.2.conv.weight": 8 * 8 * 9, "convs.3.conv.weight": 16 * 8 * 9,
             "convs.4.conv.weight": 16 * 16 * 9, "out.weight": 10 * 16}
    sparse = {"convs.0.conv.weight": 9 * 1 * 9, "convs.1.conv.weight": 18 * 9 * 9,
              "convs.2.conv.weight": 18 * 18 * 9, "convs.3.conv.weight": 36 * 18 * 9,
              "convs.4.conv.weight": 36 * 36 * 9, "out.weight": 10 * 36}
    assert {n: r["active"] for n, r in layers.items()} == dense
    assert {n: r["sparse_total"] for n, r in layers.items()} == sparse
    assert data["totals"]["sparse_active"] == sum(dense.values())
    # The 'dense' init policy: He-normal std from the twin's fan-in (in_D · 3 · 3).
    assert layers["convs.2.conv.weight"]["init_std"] == pytest.approx((2 / (8 * 9)) ** 0.5)


def test_pair_cli_on_a_wrn_without_batchnorm_is_one_line(
        capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = _run(["pair", "--sparse-width", "8", "--dense-width", "4",
                         "--set", "model.name=wrn", "--set", "data.name=digits",
                         "--set", "model.batchnorm=false", "--set", "model.skip=false"], capsys)
    _assert_one_line_error(code, err, "model.batchnorm=true and model.skip=true")
    # Left unset, the family default applies: BatchNorm and skips on.
    code, out, err = _run(["pair", "--sparse-width", "8", "--dense-width", "4", "--json",
                           "--set", "model.name=wrn", "--set", "data.name=digits"], capsys)
    assert code == 0, err
