"""A resumed run trains on with the mask it started with (mask.pt), not a rebuilt one."""

from __future__ import annotations

from pathlib import Path

import torch

import sparseflow  # noqa: F401
from sparseflow.config import build_config
from sparseflow.sparsity import Mask
from sparseflow.train import run_experiment

from tests.conftest import tiny


def _shifted(mask: Mask) -> Mask:
    """Another mask with the same per-layer counts: every layer's pattern rolled by one."""
    return Mask({n: torch.roll(t.reshape(-1), 1).reshape(t.shape) for n, t in mask.items()})


def test_resume_keeps_the_stored_mask(tmp_path: Path) -> None:
    cfg = build_config(tiny(sparsity={"density": 0.3, "masker": "snip"}))
    part = run_experiment(cfg, tmp_path, until_epoch=1)
    assert part.status == "partial"
    built_mask = Mask.load(part.run_dir / "mask.pt")
    stored = _shifted(built_mask)
    assert any(not torch.equal(stored[n], built_mask[n]) for n in stored)
    stored.save(part.run_dir / "mask.pt")  # as if the rebuilt mask had come out differently
    done = run_experiment(cfg, tmp_path)
    final = torch.load(done.run_dir / "final.pt", weights_only=True)
    kept = Mask.load(done.run_dir / "mask.pt")
    for name in stored:
        assert torch.equal(kept[name], stored[name])
        assert torch.all(final[name][~stored[name]] == 0)  # trained on the stored mask
    assert done.summary["active_weights"] == stored.active()


def test_a_fresh_run_writes_the_mask_it_built(tmp_path: Path) -> None:
    cfg = build_config(tiny(sparsity={"density": 0.3, "masker": "snip"}))
    first = run_experiment(cfg, tmp_path / "a")
    again = run_experiment(cfg, tmp_path / "b")
    a, b = Mask.load(first.run_dir / "mask.pt"), Mask.load(again.run_dir / "mask.pt")
    assert all(torch.equal(a[n], b[n]) for n in a)  # deterministic, and written each time
    final = torch.load(first.run_dir / "final.pt", weights_only=True)
    assert all(torch.all(final[n][~a[n]] == 0) for n in a)
