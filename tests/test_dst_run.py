"""Dynamic sparse training end to end: what a run stores, the initial mask, resume and the
probe leave training bitwise unchanged, bad settings, and the vectorization rule."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch

import sparseflow  # noqa: F401
from sparseflow.config import config_id, dump_config
from sparseflow.config.schema import ExperimentConfig
from sparseflow.scsdc import same_capacity_counts
from sparseflow.sparsity import Mask, prunable_parameters
from sparseflow.store import PlannedRun
from sparseflow.studies.grouping import group_runs, vectorizable
from sparseflow.train.build import build_run, dense_twin
from sparseflow.train.run import run_experiment

from tests.conftest import tiny
from tests.test_cli import _run as run_cli


def _cfg(masker: str = "rigl", gradflow: bool = True, **over: Any) -> ExperimentConfig:
    sparsity = {"density": 0.3, "masker": masker, "dst": {"update_every": 4}}
    sparsity.update(over.pop("sparsity", {}))
    over.setdefault("optim", {"name": "momentum", "lr": 0.02})
    return ExperimentConfig.model_validate(tiny(
        sparsity=sparsity, gradflow={"enabled": gradflow, "points": 3}, **over))


def _load(path: Path) -> dict[str, torch.Tensor]:
    return torch.load(path, weights_only=True)


def _same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("masker", ["set", "rigl"])
def test_a_run_stores_the_series_the_masks_and_the_summary(tmp_path: Path, masker: str) -> None:
    cfg = _cfg(masker)
    res = run_experiment(cfg, tmp_path)
    s, d = res.summary, res.run_dir
    series = json.loads((d / "dst.json").read_text())
    ups = series["updates"]
    assert s["mask_updates"] == len(ups) > 2 and series["masker"] == masker
    first, final = Mask.load(d / "mask.pt"), Mask.load(d / "mask_final.pt")
    assert first.keys() == final.keys()
    assert any(not torch.equal(first[n], final[n]) for n in first)
    # Counts conserved: final densities are the initial ones; the union is larger.
    assert s["final_layer_densities"] == pytest.approx(first.densities())
    assert s["density"] == pytest.approx(first.density())
    assert first.density() < s["ever_active"] <= 1.0
    for n in first:
        union = first[n] | final[n]
        assert s["ever_active_per_layer"][n] >= union.float().mean().item() - 1e-12
    for r in ups:
        assert r["dropped"] == r["grown"]
        assert set(r["before"]) == set(r["after"]) == {"egf1", "egf2"}
        assert r["densities"] == pytest.approx(first.densities())
    # mask.pt is the initial mask the build draws.
    assert _same(first.to_dict(), build_run(cfg).mask.to_dict())


def test_egf_before_and_after_are_the_probe_values(tmp_path: Path) -> None:
    # One update at t = 0: "before" is the probe's EGF at initialization with the first mask.
    cfg = _cfg(sparsity={"dst": {"update_every": 10_000}}, train={"epochs": 1})
    res = run_experiment(cfg, tmp_path)
    up = json.loads((res.run_dir / "dst.json").read_text())["updates"]
    point0 = json.loads((res.run_dir / "gradflow.json").read_text())[0]
    assert len(up) == 1 and point0["epoch"] == 0
    assert up[0]["before"]["egf2"] == pytest.approx(point0["egf2"], rel=1e-9)
    assert up[0]["after"]["egf2"] != pytest.approx(point0["egf2"], rel=1e-9)


def test_no_measure_without_gradflow_or_with_measure_off(tmp_path: Path) -> None:
    for cfg in (_cfg(gradflow=False),
                _cfg(sparsity={"dst": {"update_every": 4, "measure": False}})):
        res = run_experiment(cfg, tmp_path)
        ups = json.loads((res.run_dir / "dst.json").read_text())["updates"]
        assert ups and all("before" not in r and "after" not in r for r in ups)


def _artifacts(run_dir: Path) -> tuple[dict[str, Any], ...]:
    return (_load(run_dir / "final.pt"), _load(run_dir / "mask_final.pt"),
            json.loads((run_dir / "dst.json").read_text()))


@pytest.mark.parametrize("masker", ["set", "rigl"])
def test_resume_in_parts_is_bitwise_the_run_in_one_go(tmp_path: Path, masker: str) -> None:
    cfg = _cfg(masker, optim={"name": "adam", "lr": 0.01})
    whole = run_experiment(cfg, tmp_path / "one")
    assert run_experiment(cfg, tmp_path / "parts", until_epoch=1).status == "partial"
    assert run_experiment(cfg, tmp_path / "parts", until_epoch=2).status == "partial"
    parts = run_experiment(cfg, tmp_path / "parts")
    a, b = _artifacts(whole.run_dir), _artifacts(parts.run_dir)
    assert _same(a[0], b[0]) and _same(a[1], b[1]) and a[2] == b[2]
    for key in ("test_loss", "ever_active", "mask_updates", "egf2"):
        assert whole.summary[key] == parts.summary[key]
    assert _same(_load(whole.run_dir / "mask.pt"), _load(parts.run_dir / "mask.pt"))


@pytest.mark.parametrize("probe_set", ["fixed", "batch"])
def test_the_probe_changes_nothing(tmp_path: Path, probe_set: str) -> None:
    on = run_experiment(_cfg(gradflow=True, model={"batchnorm": True},
                             regularization={"dropout": 0.1}).model_copy(update={
                                 "gradflow": _cfg().gradflow.model_copy(
                                     update={"probe_set": probe_set})}), tmp_path / "on")
    off = run_experiment(_cfg(gradflow=False, model={"batchnorm": True},
                              regularization={"dropout": 0.1}), tmp_path / "off")
    a, b = _artifacts(on.run_dir), _artifacts(off.run_dir)
    assert _same(a[0], b[0]) and _same(a[1], b[1])
    assert all("after" in r for r in a[2]["updates"])
    strip = [{k: v for k, v in r.items() if k not in ("before", "after")}
             for r in a[2]["updates"]]
    assert strip == b[2]["updates"]


def test_initial_mask_is_the_static_runs_mask() -> None:
    for masker in ("set", "rigl"):
        dyn = build_run(_cfg(masker)).mask
        static = build_run(_cfg("random")).mask
        assert _same(dyn.to_dict(), static.to_dict())
    mag = build_run(_cfg(sparsity={"dst": {"init_masker": "magnitude"}})).mask
    assert _same(mag.to_dict(), build_run(_cfg("magnitude")).mask.to_dict())


def test_sc_sdc_initial_counts_are_each_layers_budget() -> None:
    cfg = ExperimentConfig.model_validate(tiny(
        sparsity={"masker": "set", "dense_width": 12}, model={"width": 32}))
    built = build_run(cfg)
    twin = dense_twin(cfg, built.data.input_shape, built.data.num_classes)
    want = same_capacity_counts(built.state.model, twin, cfg.sparsity.matching,
                                cfg.sparsity.distribution)
    assert {n: built.mask.active(n) for n in built.mask} == want
    assert set(want) == set(prunable_parameters(built.state.model))


def test_a_dynamic_init_masker_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]
                                          ) -> None:
    import yaml

    data = tiny(sparsity={"density": 0.3, "masker": "set", "dst": {"init_masker": "rigl"}})
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(data))
    code, _, err = run_cli(["train", str(path), "--out", str(tmp_path / "o"), "-q"], capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert "init_masker" in err and "static" in err


def test_a_start_past_the_end_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]
                                         ) -> None:
    import yaml

    data = tiny(sparsity={"density": 0.3, "masker": "rigl", "dst": {"start_step": 10_000}})
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(data))
    code, _, err = run_cli(["train", str(path), "--out", str(tmp_path / "o"), "-q"], capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert "start_step" in err
    assert not (tmp_path / "o").exists() or not any((tmp_path / "o").rglob("summary.json"))


def _planned(cfg: ExperimentConfig, seed: int) -> PlannedRun:
    c = cfg.model_copy(update={"seed": seed})
    return PlannedRun(run_key=f"{config_id(c)}-s{seed}", config_id=config_id(c), seed=seed,
                      kind="sparse", sparse_width=None, dense_width=32, config=dump_config(c))


def test_a_run_whose_mask_changes_trains_alone() -> None:
    static = _cfg("random", gradflow=False)
    dynamic = _cfg("rigl", gradflow=False)
    assert vectorizable(static) and not vectorizable(dynamic)
    assert not vectorizable(_cfg("set", gradflow=False))
    runs = [_planned(static, s) for s in range(3)] + [_planned(dynamic, s) for s in range(3)]
    groups = group_runs(runs, vectorize="auto", max_group=8)
    sizes = sorted(len(g.runs) for g in groups)
    assert sizes == [1, 1, 1, 3]
    assert {g.runs[0].config_id for g in groups if len(g.runs) == 1} == {config_id(dynamic)}


def test_with_restore_best_the_final_mask_is_the_best_epochs(tmp_path: Path) -> None:
    cfg = _cfg(optim={"name": "adam", "lr": 0.03}, sparsity={"dst": {"update_every": 2}},
               train={"epochs": 12, "early_stopping": {"enabled": True, "patience": 2}})
    res = run_experiment(cfg, tmp_path)
    s, d = res.summary, res.run_dir
    best, stopped = s["best_epoch"], s["epochs"]
    ups = json.loads((d / "dst.json").read_text())["updates"]
    assert best < stopped and any(r["epoch"] >= best for r in ups)  # the mask moved after it
    final, weights = Mask.load(d / "mask_final.pt"), _load(d / "final.pt")
    for n in final:  # the restored weights are zero wherever the saved final mask prunes
        assert torch.all(weights[n][~final[n]] == 0)
    assert s["final_layer_densities"] == pytest.approx(final.densities())
