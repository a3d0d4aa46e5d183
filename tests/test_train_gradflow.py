"""The gradient-flow probe inside training runs: schedule, storage, and no perturbation."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

import sparseflow  # noqa: F401
from sparseflow.config import build_config
from sparseflow.gradflow import MEASURES
from sparseflow.train import run_experiment
from sparseflow.train.probe import on_probe_grid, probe_epochs, select_points

from tests.conftest import tiny


def _final(res) -> dict[str, torch.Tensor]:
    return torch.load(res.run_dir / "final.pt", weights_only=True)


def test_probe_epochs_even_from_zero_to_last() -> None:
    assert probe_epochs(500, 11) == [0, 50, 100, 150, 200, 250, 300, 350, 400, 450, 500]
    assert probe_epochs(10, 11) == list(range(11))
    assert probe_epochs(4, 11) == [0, 1, 2, 3, 4]  # duplicates removed
    assert probe_epochs(7, 3) == [0, 4, 7]


@pytest.mark.parametrize("probe_set", ["fixed", "full"])
def test_probe_on_off_gives_bitwise_identical_weights(tmp_path: Path, probe_set: str) -> None:
    common = tiny(sparsity={"density": 0.3}, model={"batchnorm": True},
                  regularization={"dropout": 0.2, "l2": 1e-3}, data={"augment": True},
                  train={"epochs": 4})
    on = build_config({**common, "gradflow": {"enabled": True, "probe_set": probe_set,
                                              "points": 5}})
    off = build_config({**common, "gradflow": {"enabled": False}})
    a, b = run_experiment(on, tmp_path / "on"), run_experiment(off, tmp_path / "off")
    fa, fb = _final(a), _final(b)
    assert fa.keys() == fb.keys() and all(torch.equal(fa[k], fb[k]) for k in fa)
    assert (a.run_dir / "gradflow.json").is_file() and not (b.run_dir / "gradflow.json").exists()


def test_series_and_averages_are_stored(tmp_path: Path) -> None:
    cfg = build_config(tiny(sparsity={"density": 0.2}, train={"epochs": 4},
                            gradflow={"points": 3}))
    res = run_experiment(cfg, tmp_path)
    series = json.loads((res.run_dir / "gradflow.json").read_text())
    assert [p["epoch"] for p in series] == [0, 2, 4]
    assert set(series[0]["per_layer"]) == {"hidden.0.linear.weight", "hidden.1.linear.weight",
                                           "out.weight"}
    s = res.summary
    assert s["gradflow_points"] == 3
    for key in MEASURES:
        assert s[key] == pytest.approx(sum(p[key] for p in series) / 3)
    # A sparse net: the raw gradient leaks at pruned positions, the masked one does not.
    assert s["gf2"] > s["gf2_masked"]


def test_batch_mode_reads_raw_training_gradient(tmp_path: Path) -> None:
    cfg = build_config(tiny(sparsity={"density": 0.2}, train={"epochs": 2},
                            gradflow={"probe_set": "batch", "points": 3}))
    res = run_experiment(cfg, tmp_path)
    series = json.loads((res.run_dir / "gradflow.json").read_text())
    assert [p["epoch"] for p in series] == [0, 1, 2]
    assert series[0]["step"] == 0
    # Raw gradients were read before masking: unmasked > masked.
    assert all(p["gf1"] > p["gf1_masked"] for p in series)


def test_probe_grid_coarsens_and_bounds_the_probe_count() -> None:
    grid = [e for e in range(501) if on_probe_grid(e, 11)]
    assert grid[:21] == list(range(21))  # every epoch up to B = 20
    assert grid[21:31] == list(range(22, 41, 2))  # then every 2nd up to 40, every 4th ...
    # The spacing at e is below e/10 (= 2e/B), so no target is far from a measured epoch.
    assert all(e - max(g for g in grid if g <= e) < e / 10 for e in range(21, 501))
    assert len(grid) <= 20 + 10 * math.log2(500 / 20) + 2  # 66 probes for a 500-epoch cap


def test_select_points_spreads_over_the_epochs_trained() -> None:
    # stop 8, 5 points: targets 0, 2, 4, 6, 8.
    assert select_points(list(range(9)), 8, 5) == [0, 2, 4, 6, 8]
    # stop 30 on the grid (0..20, 22, 24, ..., 30) and 11 points: targets 0, 3, ..., 30.
    measured = [e for e in range(31) if on_probe_grid(e, 11)]
    assert select_points(measured, 30, 11) == [0, 3, 6, 9, 12, 15, 18, 20, 24, 26, 30]
    assert select_points([0, 1, 2], 2, 11) == [0, 1, 2]  # fewer epochs than points


def test_early_stopping_averages_cover_the_epochs_trained(tmp_path: Path) -> None:
    """A run with a 500-epoch cap that stops after a few epochs: its average EGF covers the
    epochs it trained (not the value at initialization alone)."""
    cfg = build_config(tiny(optim={"name": "adam", "lr": 0.01}, data={"train_subset": 128},
                            gradflow={"points": 11},
                            train={"epochs": 500,
                                   "early_stopping": {"enabled": True, "patience": 3}}))
    res = run_experiment(cfg, tmp_path)
    stop = res.summary["epochs"]
    assert res.summary["stopped_early"] and stop < 50
    series = json.loads((res.run_dir / "gradflow.json").read_text())
    measured = [p["epoch"] for p in series]
    assert measured == [e for e in range(stop + 1) if on_probe_grid(e, 11) or e == stop]
    chosen = res.summary["gradflow_epochs"]
    assert chosen == select_points(measured, stop, 11)
    assert chosen[0] == 0 and chosen[-1] == stop and len(chosen) == min(11, stop + 1)
    by_epoch = {p["epoch"]: p for p in series}
    expected = math.fsum(by_epoch[e]["egf2"] for e in chosen) / len(chosen)
    assert res.summary["egf2"] == pytest.approx(expected, rel=1e-12)
    assert res.summary["gradflow_points"] == len(chosen)


def test_early_stopping_probe_resumes_bitwise(tmp_path: Path) -> None:
    cfg = build_config(tiny(optim={"name": "adam", "lr": 0.01}, data={"train_subset": 128},
                            train={"epochs": 60,
                                   "early_stopping": {"enabled": True, "patience": 3}}))
    whole = run_experiment(cfg, tmp_path / "w")
    run_experiment(cfg, tmp_path / "p", until_epoch=3)
    resumed = run_experiment(cfg, tmp_path / "p")
    assert (json.loads((whole.run_dir / "gradflow.json").read_text())
            == json.loads((resumed.run_dir / "gradflow.json").read_text()))
    assert whole.summary["egf2"] == resumed.summary["egf2"]


def test_resume_keeps_series(tmp_path: Path) -> None:
    cfg = build_config(tiny(sparsity={"density": 0.3}, train={"epochs": 4},
                            gradflow={"points": 5}))
    whole = run_experiment(cfg, tmp_path / "w")
    run_experiment(cfg, tmp_path / "p", until_epoch=2)
    resumed = run_experiment(cfg, tmp_path / "p")
    sw = json.loads((whole.run_dir / "gradflow.json").read_text())
    sr = json.loads((resumed.run_dir / "gradflow.json").read_text())
    assert sw == sr
    assert all(math.isfinite(resumed.summary[k]) for k in ("egf1", "egf2", "gf1", "gf2"))


def test_kendall_table_over_run_summaries(tmp_path: Path) -> None:
    """The README recipe: Kendall τ straight from summary.json files of finished runs."""
    from scipy import stats

    from sparseflow.analysis import kendall_table
    from sparseflow.train import is_finished, read_summary

    for lr in (0.01, 0.05, 0.2):
        for density in (0.2, 1.0):
            cfg = build_config(tiny(optim={"name": "sgd", "lr": lr}, train={"epochs": 2},
                                    sparsity={"density": density}, gradflow={"points": 3}))
            run_experiment(cfg, tmp_path)
    runs = [read_summary(d) for d in sorted(tmp_path.iterdir()) if is_finished(d)]
    assert len(runs) == 6
    table = kendall_table(runs)
    sparse = [r for r in runs if r["kind"] == "sparse"]
    tau, _ = stats.kendalltau([r["egf2"] for r in sparse], [r["test_loss"] for r in sparse])
    assert table.cell("egf2", "sparse", "test_loss").tau == pytest.approx(tau)
    assert table.cell("egf2", "sparse", "test_loss").n == 3
    assert "EGF₂" in table.to_markdown()
