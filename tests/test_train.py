"""The training loop and run lifecycle: determinism, exact resume, early stopping, outputs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import sparseflow  # noqa: F401
from sparseflow.config import build_config
from sparseflow.errors import ConfigError
from sparseflow.sparsity import Mask
from sparseflow.train import run_experiment

from tests.conftest import tiny


def _final(result) -> dict[str, torch.Tensor]:
    return torch.load(result.run_dir / "final.pt", weights_only=True)


def _same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_run_directory_contract(tmp_path: Path) -> None:
    cfg = build_config(tiny(sparsity={"density": 0.2}))
    res = run_experiment(cfg, tmp_path)
    files = {p.name for p in res.run_dir.iterdir()}
    assert files == {"config.json", "mask.pt", "final.pt", "metrics.json", "gradflow.json",
                     "summary.json"}
    summary = json.loads((res.run_dir / "summary.json").read_text())
    assert summary["kind"] == "sparse" and summary["epochs"] == 3
    assert 0.0 <= summary["test_accuracy"] <= 1.0
    assert summary["active_weights"] == Mask.load(res.run_dir / "mask.pt").active()
    metrics = json.loads((res.run_dir / "metrics.json").read_text())
    assert [m["epoch"] for m in metrics] == [1, 2, 3]
    stored = json.loads((res.run_dir / "config.json").read_text())
    assert stored["config"]["sparsity"]["density"] == 0.2


def test_same_seed_bitwise_identical_and_seeds_differ(tmp_path: Path) -> None:
    cfg = build_config(tiny(sparsity={"density": 0.3},
                            data={"augment": True}, regularization={"dropout": 0.2}))
    a = run_experiment(cfg, tmp_path / "a")
    b = run_experiment(cfg, tmp_path / "b")
    c = run_experiment(cfg.model_copy(update={"seed": 1}), tmp_path / "c")
    assert _same(_final(a), _final(b))
    assert not _same(_final(a), _final(c))
    assert a.summary["test_loss"] == b.summary["test_loss"]


@pytest.mark.parametrize("extra", [
    {"optim": {"name": "adam", "lr": 0.01}, "model": {"batchnorm": True},
     "regularization": {"dropout": 0.1}, "data": {"augment": True}},
    {"optim": {"name": "momentum", "lr": 0.05, "schedule": {"name": "cosine",
                                                            "warmup_epochs": 1}},
     "train": {"early_stopping": {"enabled": True, "patience": 5}}},
])
def test_resume_is_bitwise_identical(tmp_path: Path, extra: dict) -> None:
    extra = {**extra, "train": {"epochs": 4, **extra.get("train", {})}}
    cfg = build_config(tiny(sparsity={"density": 0.25}, **extra))
    whole = run_experiment(cfg, tmp_path / "whole")
    part = run_experiment(cfg, tmp_path / "parts", until_epoch=2)
    assert part.status == "partial" and (part.run_dir / "checkpoint.pt").is_file()
    assert not (part.run_dir / "summary.json").exists()
    resumed = run_experiment(cfg, tmp_path / "parts")
    assert resumed.status == "finished" and resumed.summary["resumed"] is True
    assert _same(_final(whole), _final(resumed))
    assert not (resumed.run_dir / "checkpoint.pt").exists()
    m_whole = json.loads((whole.run_dir / "metrics.json").read_text())
    m_res = json.loads((resumed.run_dir / "metrics.json").read_text())
    strip = [{k: v for k, v in r.items() if k != "seconds"} for r in m_whole]
    assert strip == [{k: v for k, v in r.items() if k != "seconds"} for r in m_res]


def test_finished_run_is_a_noop(tmp_path: Path) -> None:
    cfg = build_config(tiny(train={"epochs": 1}))
    first = run_experiment(cfg, tmp_path)
    mtime = (first.run_dir / "final.pt").stat().st_mtime_ns
    again = run_experiment(cfg, tmp_path)
    assert again.status == "already_finished"
    assert again.summary == first.summary
    assert (first.run_dir / "final.pt").stat().st_mtime_ns == mtime


def test_early_stopping_stops_and_restores_best(tmp_path: Path) -> None:
    # lr far too high: validation loss gets worse quickly, so training stops early.
    cfg = build_config(tiny(optim={"name": "sgd", "lr": 3.0}, train={
        "epochs": 30, "early_stopping": {"enabled": True, "patience": 2}}))
    res = run_experiment(cfg, tmp_path)
    s = res.summary
    assert s["stopped_early"] and s["epochs"] < 30
    metrics = json.loads((res.run_dir / "metrics.json").read_text())
    finite = [m for m in metrics if m["val_loss"] is not None]
    best = min(finite, key=lambda m: m["val_loss"])
    assert s["best_epoch"] == best["epoch"]
    assert s["val_loss"] == pytest.approx(best["val_loss"], rel=1e-6)


def test_early_stopping_requires_validation(tmp_path: Path) -> None:
    cfg = build_config(tiny(data={"val_fraction": 0.0},
                            train={"early_stopping": {"enabled": True}}))
    with pytest.raises(ConfigError, match="val_fraction"):
        run_experiment(cfg, tmp_path)
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize("optim,reg", [
    ({"name": "adam", "lr": 0.01}, {"l2": 0.01}),
    ({"name": "rmsprop", "lr": 0.001}, {}),
    ({"name": "adagrad", "lr": 0.05}, {}),
    ({"name": "momentum", "lr": 0.05}, {"weight_decay": 0.01}),
])
def test_final_weights_keep_pruned_zero(tmp_path: Path, optim: dict, reg: dict) -> None:
    cfg = build_config(tiny(optim=optim, regularization=reg, sparsity={"density": 0.1},
                            model={"batchnorm": True}))
    res = run_experiment(cfg, tmp_path)
    final, mask = _final(res), Mask.load(res.run_dir / "mask.pt")
    for name in mask:
        assert torch.all(final[name][~mask[name]] == 0), name
        assert torch.count_nonzero(final[name][mask[name]]) > 0


def test_sparse_run_is_sparse_and_dense_has_no_mask(tmp_path: Path) -> None:
    dense = run_experiment(build_config(tiny(train={"epochs": 1})), tmp_path)
    assert not (dense.run_dir / "mask.pt").exists() and dense.summary["density"] == 1.0
