"""Same config + seed ⇒ identical final weights, whatever torch's thread count or the entry point.

The config below has BatchNorm over 256 × 256 activations and a batch of 256, so its reductions
are large enough for PyTorch to split them across intra-op threads: without the run's own
thread pinning (``train.threads``), 1 and 2 threads give different bits.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

import sparseflow  # noqa: F401
from sparseflow.config import build_config
from sparseflow.train import run_experiment
from sparseflow.train.determinism import pinned_threads

from tests.conftest import tiny

CONFIG = tiny(data={"num_samples": 1500}, model={"width": 256, "batchnorm": True},
              optim={"name": "adam", "lr": 0.01}, train={"epochs": 2, "batch_size": 256},
              sparsity={"density": 0.5})

_TRAIN_AT = """
import sys, torch, yaml
torch.set_num_threads(int(sys.argv[1]))  # the caller's setting, which the run must not follow
from sparseflow.config import build_config
from sparseflow.train import run_experiment
cfg = build_config(yaml.safe_load(open(sys.argv[2])))
print(run_experiment(cfg, sys.argv[3]).run_dir)
"""


def _weights(run_dir: Path) -> dict[str, torch.Tensor]:
    return torch.load(run_dir / "final.pt", weights_only=True)


def _same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def _train_in_process_at(threads: int, cfg_path: Path, out: Path) -> Path:
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    env["OMP_NUM_THREADS"] = str(threads)
    done = subprocess.run([sys.executable, "-c", _TRAIN_AT, str(threads), str(cfg_path), str(out)],
                          capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stderr
    return Path(done.stdout.strip().splitlines()[-1])


def test_same_run_at_1_and_2_threads_is_bitwise_identical(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(CONFIG))
    one = _train_in_process_at(1, path, tmp_path / "t1")
    two = _train_in_process_at(2, path, tmp_path / "t2")
    assert _same(_weights(one), _weights(two))
    rec = json.loads((two / "summary.json").read_text())["reproducibility"]
    assert rec["threads"] == 1 and rec["torch"] == torch.__version__
    assert rec["cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    assert rec["mode"] in ("machine", "portable") and rec["device"] == "cpu"


def test_thread_count_is_part_of_the_computation(tmp_path: Path) -> None:
    """The control: train.threads=2 is another run id, and on CPUs whose kernels split these
    reductions it gives other bits, which is why a run pins its threads."""
    one = build_config(CONFIG)
    two = build_config(CONFIG, ["train.threads=2"])
    assert run_experiment(one, tmp_path).run_dir != run_experiment(two, tmp_path).run_dir
    if _same(_weights(run_experiment(one, tmp_path).run_dir),
             _weights(run_experiment(two, tmp_path).run_dir)):
        pytest.skip("this CPU's kernels give the same bits at 1 and 2 threads for this config")


def test_pinned_threads_restores_the_callers_setting() -> None:
    before = torch.get_num_threads()
    with pinned_threads(before + 1):
        assert torch.get_num_threads() == before + 1
    assert torch.get_num_threads() == before


def test_study_run_equals_sparseflow_train_of_its_config(tmp_path: Path) -> None:
    """A study's workers (--jobs 2: worker processes at 1 thread each), the same study with
    --jobs 1 (trained in the driver, at torch's default threads) and `sparseflow train` in a
    process at 2 threads give the same final.pt."""
    spec = {"name": "det", "base": {**CONFIG, "sparsity": {}},
            "axes": {"optim.name": ["adam"]}, "variants": ["NR"],
            "scsdc": {"sparse_width": 256, "dense_widths": [64]}, "seeds": [0]}
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(spec))
    studies = {}
    for jobs in ("2", "1"):
        study = studies[jobs] = tmp_path / f"study-j{jobs}"
        run = subprocess.run([sys.executable, "-m", "sparseflow", "study", "run", str(path),
                              "--dir", str(study), "--jobs", jobs, "--vectorize", "off"],
                             capture_output=True, text=True, timeout=300)
        assert run.returncode == 0, run.stderr
    dirs = sorted(p for p in (studies["2"] / "runs").iterdir() if (p / "summary.json").is_file())
    assert len(dirs) == 2  # the sparse run and its dense twin
    for d in dirs:
        assert _same(_weights(d), _weights(studies["1"] / "runs" / d.name))
        cfg = json.loads((d / "config.json").read_text())["config"]
        cfg_path = tmp_path / f"{d.name}.yaml"
        cfg_path.write_text(yaml.safe_dump(cfg))
        out = tmp_path / "train" / d.name
        env = {**os.environ, "OMP_NUM_THREADS": "2"}
        done = subprocess.run([sys.executable, "-m", "sparseflow", "train", str(cfg_path),
                               "--out", str(out), "-q"], capture_output=True, text=True,
                              timeout=300, env=env)
        assert done.returncode == 0, done.stderr
        (alone,) = [p for p in out.iterdir() if (p / "summary.json").is_file()]
        assert alone.name == d.name
        assert _same(_weights(d), _weights(alone))


@pytest.mark.parametrize("family", ["cnn", "wrn", "vectorized"])
def test_every_compute_path_ignores_torchs_thread_setting(tmp_path: Path, family: str) -> None:
    """Convolutions (oneDNN), BatchNorm2d, residual blocks and the batched (bmm) path of
    vectorized groups: trained after torch.set_num_threads(1) and (2), the same bits."""
    from sparseflow.train.vectorized import run_group

    from tests.test_families_train import CNN, WRN, digits

    model = {"cnn": {**CNN, "batchnorm": True, "skip": True}, "wrn": WRN}.get(family)
    if model is None:
        cfgs = [build_config({**CONFIG, "seed": s}) for s in (0, 1)]
    else:
        cfgs = [build_config(digits(model, sparsity={"density": 0.3},
                                    data={"train_subset": 256}, train={"epochs": 1}))]
    before = torch.get_num_threads()
    finals = []
    try:
        for threads in (1, 2):
            torch.set_num_threads(threads)
            out = tmp_path / f"t{threads}"
            results = run_group(cfgs, out) if len(cfgs) > 1 else [run_experiment(cfgs[0], out)]
            finals.append([_weights(r.run_dir) for r in results])
    finally:
        torch.set_num_threads(before)
    assert all(_same(a, b) for a, b in zip(*finals, strict=True))
