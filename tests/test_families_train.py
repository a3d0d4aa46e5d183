"""Convolutional families through training: masks hold, seeds reproduce, probes don't perturb,
gradient flow matches an autograd oracle."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F

import sparseflow  # noqa: F401
from sparseflow.config import ModelConfig, build_config
from sparseflow.gradflow import measure_gradient_flow
from sparseflow.models import build_model
from sparseflow.prunable import prunable_parameters
from sparseflow.sparsity import Mask
from sparseflow.train import run_experiment

WRN = {"name": "wrn", "width": 4, "depth": 10, "batchnorm": True, "skip": True}
CNN = {"name": "cnn", "width": 4}
#: Prunable layers (conv + linear weights) of the two models above.
WRN_LAYERS = ["stem.weight", "stages.0.0.conv1.weight", "stages.0.0.conv2.weight",
              "stages.1.0.conv1.weight", "stages.1.0.conv2.weight", "stages.1.0.shortcut.weight",
              "stages.2.0.conv1.weight", "stages.2.0.conv2.weight", "stages.2.0.shortcut.weight",
              "out.weight"]
CNN_LAYERS = [f"convs.{i}.conv.weight" for i in range(5)] + ["out.weight"]


def digits(model: dict[str, Any], **sections: Any) -> dict[str, Any]:
    """A 2-epoch run on 512 of scikit-learn's 8×8 digits (offline), with section overrides."""
    base: dict[str, Any] = {
        "data": {"name": "digits", "val_fraction": 0.1, "train_subset": 512},
        "model": model,
        "optim": {"name": "sgd", "lr": 0.05},
        "train": {"epochs": 2, "batch_size": 128},
        "gradflow": {"points": 3, "probe_size": 256},
    }
    for key, value in sections.items():
        base[key] = {**base.get(key, {}), **value}
    return base


def _final(res) -> dict[str, torch.Tensor]:
    return torch.load(res.run_dir / "final.pt", weights_only=True)


def _assert_masked(res, layers: list[str]) -> Mask:
    final, mask = _final(res), Mask.load(res.run_dir / "mask.pt")
    assert list(mask) == layers  # every conv and linear weight is masked, first and last too
    for name in mask:
        assert torch.all(final[name][~mask[name]] == 0), name
        assert torch.count_nonzero(final[name][mask[name]]) > 0, name
    return mask


@pytest.mark.parametrize("model,optim,reg,layers", [
    (WRN, {"name": "momentum", "lr": 0.05}, {}, WRN_LAYERS),
    ({**CNN, "batchnorm": True}, {"name": "adam", "lr": 0.01}, {"l2": 0.01}, CNN_LAYERS),
])
def test_pruned_weights_stay_zero_through_training(tmp_path: Path, model: dict, optim: dict,
                                                   reg: dict, layers: list[str]) -> None:
    cfg = build_config(digits(model, optim=optim, regularization=reg,
                              sparsity={"density": 0.2}))
    res = run_experiment(cfg, tmp_path)
    mask = _assert_masked(res, layers)
    assert mask.density() == pytest.approx(0.2, abs=0.01)
    assert res.summary["kind"] == "sparse" and res.summary["epochs"] == 2


def test_wrn_same_capacity_run_keeps_the_twins_counts(tmp_path: Path) -> None:
    cfg = build_config(digits({**WRN, "width": 6}, optim={"name": "momentum", "lr": 0.05},
                              sparsity={"dense_width": 3}))
    mask = _assert_masked(run_experiment(cfg, tmp_path), WRN_LAYERS)
    # Dense twin: stage channels (3, 6, 12) on 1-channel 8×8 digits, 10 classes.
    assert mask.active("stem.weight") == 3 * 1 * 9
    assert mask.active("stages.1.0.conv2.weight") == 6 * 6 * 9
    assert mask.active("stages.2.0.shortcut.weight") == 12 * 6
    assert mask.active("out.weight") == 10 * 12
    assert mask.total("out.weight") == 10 * 24


def test_cnn_same_seed_is_bitwise_identical(tmp_path: Path) -> None:
    cfg = build_config(digits({**CNN, "batchnorm": True, "skip": True},
                              sparsity={"density": 0.3}, regularization={"dropout": 0.2},
                              data={"augment": True}, gradflow={"enabled": False}))
    a, b = run_experiment(cfg, tmp_path / "a"), run_experiment(cfg, tmp_path / "b")
    c = run_experiment(cfg.model_copy(update={"seed": 1}), tmp_path / "c")
    fa, fb, fc = _final(a), _final(b), _final(c)
    assert fa.keys() == fb.keys() and all(torch.equal(fa[k], fb[k]) for k in fa)
    assert not torch.equal(fa["convs.0.conv.weight"], fc["convs.0.conv.weight"])


@pytest.mark.parametrize("model,layers", [({**CNN, "batchnorm": True, "skip": True}, CNN_LAYERS),
                                          (WRN, WRN_LAYERS)])
def test_probe_on_off_gives_identical_weights(tmp_path: Path, model: dict,
                                              layers: list[str]) -> None:
    common = digits(model, sparsity={"density": 0.3}, regularization={"dropout": 0.2},
                    optim={"name": "momentum", "lr": 0.05})
    on = build_config({**common, "gradflow": {"enabled": True, "points": 3, "probe_size": 256}})
    off = build_config({**common, "gradflow": {"enabled": False}})
    a, b = run_experiment(on, tmp_path / "on"), run_experiment(off, tmp_path / "off")
    fa, fb = _final(a), _final(b)
    assert fa.keys() == fb.keys() and all(torch.equal(fa[k], fb[k]) for k in fa)
    series = json.loads((a.run_dir / "gradflow.json").read_text())
    assert [p["epoch"] for p in series] == [0, 1, 2]
    assert all(list(p["per_layer"]) == layers for p in series)
    assert all(p["egf2"] > 0 for p in series)


def test_measure_gradient_flow_on_a_cnn_matches_autograd() -> None:
    cfg = ModelConfig(name="cnn", width=3, batchnorm=True, skip=True, activation="prelu")
    model = build_model(cfg, (1, 8, 8), 10, generator=torch.Generator().manual_seed(0)).train()
    gen = torch.Generator().manual_seed(1)
    x, y = torch.randn(32, 1, 8, 8, generator=gen), torch.randint(0, 10, (32,), generator=gen)
    params = prunable_parameters(model)
    masks = {n: torch.rand(p.shape, generator=gen) < 0.4 for n, p in params.items()}
    # Oracle: torch.autograd.grad on a copy, norms by hand.
    twin = copy.deepcopy(model)
    tp = prunable_parameters(twin)
    grads = dict(zip(tp, torch.autograd.grad(F.cross_entropy(twin(x), y), list(tp.values())),
                     strict=True))
    masked = {n: torch.where(masks[n], grads[n], 0.0).double() for n in grads}
    raw = torch.cat([g.double().flatten() for g in grads.values()])
    got = measure_gradient_flow(model, F.cross_entropy, x, y, masks)
    assert list(got["per_layer"]) == CNN_LAYERS
    assert got["gf2"] == pytest.approx(raw.norm(2).item(), rel=1e-5)
    assert got["gf1"] == pytest.approx(raw.norm(1).item(), rel=1e-5)
    for p, key in ((1, "egf1"), (2, "egf2")):
        egf = sum(g.norm(p).item() for g in masked.values()) / len(masked)
        assert got[key] == pytest.approx(egf, rel=1e-5)
    for n, g in masked.items():
        assert got["per_layer"][n]["norm2"] == pytest.approx(g.norm(2).item(), rel=1e-5)
        assert got["per_layer"][n]["active"] == int(masks[n].sum())
    # The probe left no trace: BN running statistics untouched.
    assert int(model.convs[0].norm.num_batches_tracked) == 0
