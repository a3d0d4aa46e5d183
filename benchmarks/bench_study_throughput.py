"""Benchmark 4: study throughput (runs per minute) of the quickstart study with
`--vectorize auto` vs `--vectorize off` (all cores)."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import sparseflow  # noqa: F401
from sparseflow.studies import expand, load_spec, run_study

from common import fresh_dir

QUICKSTART = Path(__file__).resolve().parents[1] / "configs" / "studies" / "quickstart.yaml"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--spec", type=Path, default=QUICKSTART)
    ap.add_argument("--jobs", type=int, default=None)
    args = ap.parse_args()
    plan = expand(load_spec(args.spec))
    rates = {}
    for mode in ("off", "auto", "off", "auto"):  # alternate: same machine state for both
        t0 = time.perf_counter()
        out = run_study(plan, fresh_dir(), jobs=args.jobs, vectorize=mode)
        minutes = (time.perf_counter() - t0) / 60
        rates.setdefault(mode, []).append(out.finished / minutes)
        print(f"  vectorize={mode:<4} {out.finished} runs in {minutes * 60:6.1f} s "
              f"({out.groups} groups) = {out.finished / minutes:6.1f} runs/min")
    best = {m: max(r) for m, r in rates.items()}
    print(f"study throughput, {plan.spec.name}: auto {best['auto']:.1f} runs/min vs off "
          f"{best['off']:.1f} runs/min: ratio {best['auto'] / best['off']:.2f}x")


if __name__ == "__main__":
    main()
