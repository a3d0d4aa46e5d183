"""A run killed with SIGKILL at an arbitrary moment resumes to bitwise the same result."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

import sparseflow  # noqa: F401
from sparseflow.config import build_config
from sparseflow.train import run_experiment

from tests.conftest import tiny

CFG = tiny(data={"num_samples": 3000}, model={"width": 128, "hidden_layers": 3},
           sparsity={"density": 0.2}, optim={"name": "momentum", "lr": 0.05},
           regularization={"dropout": 0.1}, train={"epochs": 12, "batch_size": 32},
           gradflow={"points": 6})


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL")
def test_sigkill_then_resume_matches_uninterrupted(tmp_path: Path) -> None:
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(CFG))
    out = tmp_path / "killed"
    cmd = [sys.executable, "-m", "sparseflow", "train", str(path), "--out", str(out), "-q"]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    deadline = time.monotonic() + 120
    checkpoints = []
    while time.monotonic() < deadline and proc.poll() is None:
        checkpoints = list(out.glob("*/checkpoint.pt"))
        if checkpoints:
            time.sleep(0.15)  # land somewhere inside a later epoch
            break
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert checkpoints, "the run never wrote a checkpoint"
    (run_dir,) = out.iterdir()
    assert not (run_dir / "summary.json").exists(), "killed too late: the run had finished"
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr
    assert (run_dir / "summary.json").is_file()

    reference = run_experiment(build_config(CFG), tmp_path / "whole")
    a = torch.load(run_dir / "final.pt", weights_only=True)
    b = torch.load(reference.run_dir / "final.pt", weights_only=True)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert (run_dir / "gradflow.json").read_text() == \
        (reference.run_dir / "gradflow.json").read_text()
