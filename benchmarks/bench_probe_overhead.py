"""Benchmark 2: one run with gradient-flow probes at 11 epochs vs the same run without probes
(mnist1d, MLP 2×128, sparse 10%, 100 epochs, fixed probe set of 1,000 examples).
Goal: overhead ≤ 3%. The 11 probes cost a fixed amount (each a forward and backward pass over
the probe set), so the overhead shrinks as runs get longer: pass --epochs to see it."""

from __future__ import annotations

import argparse

import sparseflow  # noqa: F401
from sparseflow.config import build_config
from sparseflow.data import load_data
from sparseflow.train import run_experiment

from common import fresh_dir, report, side_by_side


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--epochs", type=int, default=100)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    base = {"data": {"name": "mnist1d"}, "model": {"width": 128, "hidden_layers": 2},
            "sparsity": {"density": 0.1}, "optim": {"name": "adam", "lr": 1e-3},
            "train": {"epochs": args.epochs}}
    off = build_config({**base, "gradflow": {"enabled": False}})
    on = build_config({**base, "gradflow": {"enabled": True, "points": 11}})
    data = load_data(on.data)
    t_off, t_on = side_by_side(lambda: run_experiment(off, fresh_dir(), data=data),
                               lambda: run_experiment(on, fresh_dir(), data=data),
                               args.repeats)
    report(f"gradient-flow probes (11 points) vs none, {args.epochs} epochs",
           "no probes", t_off, "probes at 11 epochs", t_on, "≤ 1.03x")


if __name__ == "__main__":
    main()
