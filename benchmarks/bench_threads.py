"""Benchmark 5: what reproducibility costs.

(a) A single run computes with ``train.threads`` intra-op threads (default 1) so that its bits do
    not depend on torch's thread setting. On a machine with several cores, a lone run at 1 thread
    leaves cores idle; studies are unaffected (each worker process computes at 1 thread anyway).
    Measured: the same run at ``train.threads = 1`` and at the machine's core count.
(b) ``SPARSEFLOW_PORTABLE=1`` pins PyTorch, MKL and oneDNN to AVX2 code. Measured: the same run
    in a fresh process with and without it (the variables are read once per process).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys

import torch

import sparseflow  # noqa: F401
from sparseflow.config import build_config
from sparseflow.data import load_data
from sparseflow.train import run_experiment

from common import fresh_dir, report, side_by_side

CONFIG = {"data": {"name": "mnist1d", "num_samples": 8000},
          "model": {"width": 512, "hidden_layers": 2, "batchnorm": True},
          "sparsity": {"density": 0.1}, "optim": {"name": "adam", "lr": 1e-3},
          "train": {"epochs": 3, "batch_size": 256, "checkpoint_every": 0},
          "gradflow": {"enabled": False}}

_CHILD = """
import sys, time
import sparseflow
from sparseflow.config import build_config
from sparseflow.data import load_data
from sparseflow.train import run_experiment
import json, tempfile
cfg = build_config(json.loads(sys.argv[1]))
data = load_data(cfg.data)
run_experiment(cfg, tempfile.mkdtemp(), data=data)  # warm-up
t0 = time.perf_counter()
for _ in range(int(sys.argv[2])):
    run_experiment(cfg, tempfile.mkdtemp(), data=data)
print((time.perf_counter() - t0) / int(sys.argv[2]))
"""


def _child_seconds(portable: bool, repeats: int) -> float:
    import json

    env = {k: v for k, v in os.environ.items() if k != "SPARSEFLOW_PORTABLE"}
    if portable:
        env["SPARSEFLOW_PORTABLE"] = "1"
    out = subprocess.run([sys.executable, "-c", _CHILD, json.dumps(CONFIG), str(repeats)],
                         capture_output=True, text=True, check=True, env=env)
    return float(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    cores = os.cpu_count() or 1
    one = build_config(CONFIG)
    many = build_config(CONFIG, [f"train.threads={cores}"])
    data = load_data(one.data)
    t1, tn = side_by_side(lambda: run_experiment(one, fresh_dir(), data=data),
                          lambda: run_experiment(many, fresh_dir(), data=data), args.repeats)
    report(f"one run (MLP 2x512 + BN, sparse 10%, 3 epochs) at 1 vs {cores} threads",
           f"train.threads={cores}", tn, "train.threads=1 (the default)", t1, "—")
    print(f"  (torch's default here: {torch.get_num_threads()} threads)")
    machine, portable = [], []
    for _ in range(args.repeats):  # alternate, so both see the same load
        machine.append(_child_seconds(False, 2))
        portable.append(_child_seconds(True, 2))
    machine.sort()
    portable.sort()
    report("the same run, CPU code paths pinned to AVX2 (SPARSEFLOW_PORTABLE=1) or not",
           "this CPU's own code paths", machine[len(machine) // 2],
           "SPARSEFLOW_PORTABLE=1", portable[len(portable) // 2], "—")


if __name__ == "__main__":
    main()
