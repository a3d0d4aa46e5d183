"""Benchmark 1: K = 8 runs trained as one vectorized group vs the same 8 runs one after another
(mnist1d, MLP with 2 hidden layers of 128, Adam, same epochs, gradient-flow probes on).
Goal: ≥ 4× faster."""

from __future__ import annotations

import argparse

import sparseflow  # noqa: F401
from sparseflow.config import build_config
from sparseflow.data import load_data
from sparseflow.train import run_experiment
from sparseflow.train.vectorized import run_group

from common import fresh_dir, report, side_by_side


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--k", type=int, default=8)
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1, help="train.threads of both sides (1: "
                    "the default, and what each study worker computes with)")
    args = ap.parse_args()
    base = {"data": {"name": "mnist1d"}, "model": {"width": 128, "hidden_layers": 2},
            "optim": {"name": "adam", "lr": 1e-3},
            "train": {"epochs": args.epochs, "threads": args.threads}}
    cfgs = [build_config({**base, "seed": s}) for s in range(args.k)]
    data = load_data(cfgs[0].data)

    def vectorized() -> None:
        run_group(cfgs, fresh_dir(), data=data)

    def sequential() -> None:
        out = fresh_dir()
        for cfg in cfgs:
            run_experiment(cfg, out, data=data)

    tv, ts = side_by_side(vectorized, sequential, args.repeats)
    report(f"vectorized K={args.k} vs sequential, mnist1d MLP 2x128, {args.epochs} epochs, "
           f"{args.threads} thread(s)",
           f"vectorized group of {args.k}", tv, f"{args.k} sequential runs", ts, "≥ 4x")


if __name__ == "__main__":
    main()
