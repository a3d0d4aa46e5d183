"""Benchmark 7: an SC-SDC study grid as `sparseflow study run --jobs 2` vs a hand-written PyTorch
loop doing the same work on 2 worker processes, side by side (alternating) in one process tree.

The grid: SGD with momentum × {NR, BN} × 5 dense widths (26 … 230) of sparse width 256 × 3
seeds = 60 runs of a 2-hidden-layer MLP on 20,000 Fashion-MNIST training images, 10 epochs,
EGF at 11 probe points (fixed probe set of 1,000 examples). `--small` shrinks it (4,000 images,
4 epochs, 3 widths, 2 seeds, 5 points: 24 runs) to run in about two minutes on 2 cores.

The study evaluates what the script evaluates: the test split after the last epoch
(`train.eval_test: end`; validation: `auto` = the end), plus its summary's final train/val/test
evaluation and its checkpoints, store and run directories. The hand-written side builds each
run's model, mask and probe set with sparseflow (so both train the same networks), then trains
with its own loop: masked gradients, SGD momentum, re-masked weights, EGF₂ at the probe epochs
(BatchNorm statistics restored), test accuracy at the end. Both sides compute at 1 thread per
worker, as study workers do.

Also printed: the fraction of the machine's matmul throughput (GFLOP/s of a large ``torch.mm``
at 2 threads, the two workers' total) that each side achieves, counting only the FLOPs of
active weights (sparse layers are computed densely under their masks, so this is low by
design): 6·A per training example (forward + backward), 6·A per probe example, 2·A per
evaluated example, A = the run's active prunable weights.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
import yaml

from common import fresh_dir

FULL = {"train_subset": 20000, "epochs": 10, "fractions": [0.1, 0.3, 0.5, 0.7, 0.9],
        "seeds": 3, "points": 11}
SMALL = {"train_subset": 4000, "epochs": 4, "fractions": [0.1, 0.5, 0.9], "seeds": 2,
         "points": 5}


def spec(size: dict[str, Any], backend: str = "masked") -> dict[str, Any]:
    """The study spec of the grid (``backend``: the study's ``sparsity.backend``)."""
    return {
        "name": "grid-bench",
        "base": {
            "data": {"name": "fashion_mnist", "train_subset": size["train_subset"]},
            "model": {"name": "mlp", "hidden_layers": 2},
            "optim": {"name": "momentum", "lr": 0.05},
            "train": {"epochs": size["epochs"], "batch_size": 128, "eval_test": "end"},
            "gradflow": {"points": size["points"]},
            "sparsity": {"backend": backend},
        },
        "variants": ["NR", "BN"],
        "variant_defs": {},
        "scsdc": {"sparse_width": 256, "dense_fractions": size["fractions"]},
        "seeds": size["seeds"],
    }


def study_side(spec_path: Path) -> float:
    """Wall seconds of `sparseflow study run --jobs 2` (a child process, like a user's)."""
    out = fresh_dir()
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "sparseflow", "study", "run", str(spec_path),
                    "--dir", str(out), "--jobs", "2"], check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - t0


# The hand-written side ----------------------------------------------------------------------
_DATA: dict[str, Any] = {}


def _egf2(model: torch.nn.Module, masks: dict[str, torch.Tensor], xs: torch.Tensor,
          ys: torch.Tensor) -> float:
    """EGF₂ of the probe set: mean over layers of the masked gradient's L2 norm (train mode,
    BatchNorm running statistics restored)."""
    saved = {k: v.clone() for k, v in model.state_dict().items() if "running" in k
             or "num_batches" in k}
    weights = dict(model.named_parameters())
    grads = torch.autograd.grad(F.cross_entropy(model(xs), ys),
                                [weights[n] for n in masks])
    model.load_state_dict(saved, strict=False)
    return sum(float((g * m).norm()) for g, m in zip(grads, masks.values(), strict=True)) / len(
        masks)


def handwritten_run(config: dict[str, Any]) -> int:
    """Train one run by hand; returns its active prunable weights (for the FLOP count)."""
    from sparseflow.config import build_config
    from sparseflow.data import load_data
    from sparseflow.prunable import prunable_parameters
    from sparseflow.train.build import build_run
    from sparseflow.train.probe import probe_epochs

    torch.set_num_threads(1)
    # the script computes masked dense whatever backend the study's side uses
    cfg = build_config({**config, "sparsity": {**config["sparsity"], "backend": "masked"}})
    key = cfg.data.model_dump_json()
    if key not in _DATA:
        _DATA[key] = load_data(cfg.data)
    data = _DATA[key]
    built = build_run(cfg, data)  # the same model, mask and probe set as the study's run
    model = built.state.model
    layers = prunable_parameters(model)
    masks = ({n: built.mask[n].float() for n in layers} if built.mask is not None
             else {n: torch.ones_like(p) for n, p in layers.items()})
    probe = next(h for h in built.hooks if type(h).__name__ == "GradFlowProbe")
    px, py = probe.x, probe.y
    opt = torch.optim.SGD(model.parameters(), lr=cfg.optim.lr, momentum=0.9)
    gen = torch.Generator().manual_seed(cfg.seed)
    x, y, n = data.train.x, data.train.y, len(data.train)
    points = set(probe_epochs(cfg.train.epochs, cfg.gradflow.points))
    egf = [_egf2(model, masks, px, py)] if 0 in points else []
    for epoch in range(1, cfg.train.epochs + 1):
        model.train()
        for idx in torch.randperm(n, generator=gen).split(cfg.train.batch_size):
            opt.zero_grad(set_to_none=True)
            F.cross_entropy(model(x[idx]), y[idx]).backward()
            with torch.no_grad():
                for name, p in layers.items():
                    p.grad.mul_(masks[name])
            opt.step()
            with torch.no_grad():
                for name, p in layers.items():
                    p.mul_(masks[name])
        if epoch in points:
            egf.append(_egf2(model, masks, px, py))
    model.eval()
    with torch.no_grad():
        correct = sum(int((model(data.test.x[s:s + 2048]).argmax(1)
                           == data.test.y[s:s + 2048]).sum())
                      for s in range(0, len(data.test), 2048))
    assert egf and 0 <= correct <= len(data.test)
    return int(sum(m.sum() for m in masks.values()))


def handwritten_side(configs: list[dict[str, Any]]) -> tuple[float, list[int]]:
    """Wall seconds of every run on a pool of 2 processes, and each run's active weights."""
    t0 = time.perf_counter()
    with mp.get_context("spawn").Pool(2) as pool:
        active = pool.map(handwritten_run, configs, chunksize=1)
    return time.perf_counter() - t0, active


def mm_gflops(threads: int, n: int = 2048, repeats: int = 5) -> float:
    """Best GFLOP/s of an n×n float32 torch.mm at ``threads`` threads."""
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    a, b = torch.randn(n, n), torch.randn(n, n)
    torch.mm(a, b)
    best = 0.0
    for _ in range(repeats):
        t0 = time.perf_counter()
        torch.mm(a, b)
        best = max(best, 2 * n**3 / (time.perf_counter() - t0) / 1e9)
    torch.set_num_threads(before)
    return best


def useful_flops(active: list[int], size: dict[str, Any], n_test: int) -> float:
    """FLOPs of active weights only: training, probes, the final test evaluation."""
    from sparseflow.train.probe import probe_epochs

    probes = len(probe_epochs(size["epochs"], size["points"]))
    per_weight = (6 * size["train_subset"] * size["epochs"] + 6 * 1000 * probes + 2 * n_test)
    return float(sum(active)) * per_weight


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--small", action="store_true", help="a ~2 minute version of the grid")
    ap.add_argument("--repeats", type=int, default=None, help="timed rounds (default: 2 "
                    "small, 1 full)")
    ap.add_argument("--backend", default="masked", choices=["masked", "auto", "sparse",
                                                            "compact"],
                    help="the study's sparsity.backend (the hand-written side computes masked "
                    "dense; auto: the compact layout for the layers of density <= 10%%)")
    args = ap.parse_args()
    size = SMALL if args.small else FULL
    repeats = args.repeats or (2 if args.small else 1)
    import sparseflow  # noqa: F401
    from sparseflow.config import build_config
    from sparseflow.data import load_data
    from sparseflow.studies import expand
    from sparseflow.studies.spec import StudySpec

    the_spec = spec(size, args.backend)
    spec_path = fresh_dir() / "grid.yaml"
    spec_path.write_text(yaml.safe_dump(the_spec))
    configs = [r.config for r in expand(StudySpec.model_validate(the_spec)).runs]
    n_test = len(load_data(build_config(configs[0]).data).test)
    print(f"grid: {len(configs)} runs, {size['train_subset']} training images, "
          f"{size['epochs']} epochs, {size['points']} probe points; {os.cpu_count()} CPUs")
    gflops = mm_gflops(2)
    if args.small:  # warm-up: dataset cache, imports
        study_side(spec_path)
        handwritten_side(configs[:2])
    ts, th, active = [], [], []
    for _ in range(repeats):  # alternate: both sides see the same machine load
        ts.append(study_side(spec_path))
        t, active = handwritten_side(configs)
        th.append(t)
        print(f"  study {ts[-1]:7.1f} s   hand-written {th[-1]:7.1f} s")
    s, h = min(ts), min(th)
    flops = useful_flops(active, size, n_test)
    gflops = max(gflops, mm_gflops(2))
    print(f"study run --jobs 2        {s:8.1f} s   {flops / s / 1e9:6.2f} GFLOP/s "
          f"({100 * flops / s / 1e9 / gflops:.1f}% of torch.mm)")
    print(f"hand-written, 2 workers   {h:8.1f} s   {flops / h / 1e9:6.2f} GFLOP/s "
          f"({100 * flops / h / 1e9 / gflops:.1f}% of torch.mm)")
    print(f"torch.mm at 2 threads: {gflops:.1f} GFLOP/s; active-weight work {flops / 1e12:.3f} "
          f"TFLOP")
    print(f"ratio study / hand-written: {s / h:.2f}x")


if __name__ == "__main__":
    main()
