"""Masks and maskers: exact counts, validation, persistence."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from sparseflow.errors import ConfigError
from sparseflow.sparsity import Mask, draw_mask, layer_counts, prunable_parameters


def _net() -> nn.Module:
    return nn.Sequential(nn.Linear(7, 13), nn.BatchNorm1d(13), nn.ReLU(),
                         nn.Conv1d(1, 3, 5), nn.Linear(13, 4))


def test_prunable_parameters_are_linear_and_conv_weights_in_order() -> None:
    names = list(prunable_parameters(_net()))
    assert names == ["0.weight", "3.weight", "4.weight"]


def test_layer_counts_from_density_densities_and_counts() -> None:
    params = {n: p.detach() for n, p in prunable_parameters(_net()).items()}
    assert layer_counts(params, 0.5) == {"0.weight": 46, "3.weight": 8, "4.weight": 26}
    assert layer_counts(params, 0.01)["3.weight"] == 1  # never below one weight
    c = layer_counts(params, 0.5, layer_densities={"4.weight": 1.0})
    assert c["4.weight"] == 52
    c = layer_counts(params, 1.0, layer_counts={"0.weight": 9})
    assert c["0.weight"] == 9 and c["4.weight"] == 52
    with pytest.raises(ConfigError, match="model lacks"):
        layer_counts(params, 1.0, layer_counts={"9.weight": 1})
    with pytest.raises(ConfigError, match="has 15 weights but 16"):
        layer_counts(params, 1.0, layer_counts={"3.weight": 16})


@pytest.mark.parametrize("masker", ["random", "magnitude"])
def test_layerwise_maskers_keep_exact_counts(masker: str) -> None:
    torch.manual_seed(0)
    params = {n: p.detach() for n, p in prunable_parameters(_net()).items()}
    counts = {"0.weight": 17, "3.weight": 4, "4.weight": 50}
    mask = draw_mask(masker, params, counts, torch.Generator().manual_seed(1))
    assert {n: mask.active(n) for n in mask} == counts
    assert all(mask[n].shape == params[n].shape and mask[n].dtype == torch.bool for n in mask)


def test_magnitude_keeps_largest() -> None:
    w = torch.tensor([[0.1, -5.0, 0.3], [2.0, -0.2, 0.0]])
    mask = draw_mask("magnitude", {"w": w}, {"w": 2}, torch.Generator())
    assert mask["w"].tolist() == [[False, True, False], [True, False, False]]


def test_global_magnitude_total_exact_across_layers() -> None:
    a, b = torch.tensor([1.0, 9.0, 3.0]), torch.tensor([8.0, 0.5])
    mask = draw_mask("global_magnitude", {"a": a, "b": b}, {"a": 1, "b": 1}, torch.Generator())
    assert mask["a"].tolist() == [False, True, False] and mask["b"].tolist() == [True, False]


def test_random_masker_is_seeded_and_varies() -> None:
    params = {"w": torch.zeros(20, 20)}
    m1 = draw_mask("random", params, {"w": 50}, torch.Generator().manual_seed(3))
    m2 = draw_mask("random", params, {"w": 50}, torch.Generator().manual_seed(3))
    m3 = draw_mask("random", params, {"w": 50}, torch.Generator().manual_seed(4))
    assert torch.equal(m1["w"], m2["w"]) and not torch.equal(m1["w"], m3["w"])


def test_mask_densities_save_load(tmp_path: Path) -> None:
    mask = Mask({"a": torch.tensor([True, False, False, False]), "b": torch.ones(2, 2)})
    assert mask.density("a") == 0.25 and mask.active() == 5 and mask.total() == 8
    assert mask.density() == pytest.approx(5 / 8)
    mask.save(tmp_path / "mask.pt")
    loaded = torch.load(tmp_path / "mask.pt", weights_only=True)
    assert set(loaded) == {"a", "b"} and loaded["b"].dtype == torch.bool
    again = Mask.load(tmp_path / "mask.pt")
    assert all(torch.equal(again[n], mask[n]) for n in mask)


def test_mask_check_model_rejects_bad_names_and_shapes() -> None:
    net = _net()
    with pytest.raises(ConfigError, match="not a prunable weight"):
        Mask({"1.weight": torch.ones(13, dtype=torch.bool)}).check_model(net)
    with pytest.raises(ConfigError, match="has shape"):
        Mask({"0.weight": torch.ones(7, 13, dtype=torch.bool)}).check_model(net)
    Mask.dense_like(net).check_model(net)
