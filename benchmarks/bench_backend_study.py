"""Benchmark 9: a cpu-scale paper study at sparse width 1,024, `sparsity.backend: auto` vs
`masked`, as whole studies (`run_study`, 2 workers), one after the other.

The study is the packaged `bn --scale cpu` preset (8,000 Fashion-MNIST training images, 10
epochs, EGF at 11 points, 1/2/4 hidden layers, dense widths 0.1 … 0.9 of the sparse width) with
the sparse width raised from 256 to 1,024 (dense twins 102, 307, 512, 716, 921) and, to finish in
about a quarter of an hour on 2 cores, a slice of its grid: by default one optimizer (momentum) ×
{NR, BN} × 3 depths × 5 widths × 1 seed = 30 pairs, 60 runs per side. At this width `auto`
puts in the compact layout (the mask is static) every masked Linear layer of density ≤ 10% with
≥ 65,536 weights: the hidden layers of the 0.1 and 0.3 twins (density 1% and 9%) and the input
layer of the 0.1 twin (10%); every other layer, and every dense run, computes as under
`masked`.

Both sides train with `--vectorize off` (runs on the sparse path always train alone; so the two
sides differ only in the backend). Printed: each side's wall time, the sparse runs' summed
training time per dense-width fraction on each side, and the ratios.
"""

from __future__ import annotations

import argparse
import os
import time
from collections import defaultdict
from typing import Any

import yaml

from common import fresh_dir


def sliced_spec(optimizers: list[str], variants: list[str], sparse_width: int,
                backend: str) -> dict[str, Any]:
    """The cpu bn preset at ``sparse_width``, restricted to ``optimizers`` × ``variants``."""
    from sparseflow.presets import preset_path

    spec = yaml.safe_load(preset_path("bn", "cpu").read_text())  # a fresh dict: edited below
    spec["name"] = f"bn-cpu-w{sparse_width}-{backend}"
    spec["axes"]["optim.name"] = optimizers
    spec["linked"]["optim.name"] = {o: spec["linked"]["optim.name"][o] for o in optimizers}
    spec["variants"] = variants
    spec["scsdc"]["sparse_width"] = sparse_width
    spec["base"].setdefault("sparsity", {})["backend"] = backend
    return spec


def run_side(spec: dict[str, Any], jobs: int) -> tuple[float, dict[float, float], int]:
    """Wall seconds of the study, the sparse runs' summed seconds per dense fraction, runs."""
    from sparseflow.studies import expand, run_study
    from sparseflow.studies.spec import StudySpec

    plan = expand(StudySpec.model_validate(spec))
    runs = {r.run_key: r for r in plan.runs}
    width = spec["scsdc"]["sparse_width"]
    per_fraction: dict[float, float] = defaultdict(float)

    def note(o: Any) -> None:  # each finished sparse run's training seconds, by its twin's width
        run = runs[o.run_key]
        if o.ok and run.kind == "sparse":
            frac = round(run.config["sparsity"]["dense_width"] / width, 1)
            per_fraction[frac] += o.summary["duration_s"]

    t0 = time.perf_counter()
    out = run_study(plan, fresh_dir(), jobs=jobs, vectorize="off", on_outcome=note)
    wall = time.perf_counter() - t0
    return wall, dict(per_fraction), out.finished


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--optimizers", nargs="+", default=["momentum"])
    ap.add_argument("--variants", nargs="+", default=["NR", "BN"])
    ap.add_argument("--sparse-width", type=int, default=1024)
    ap.add_argument("--jobs", type=int, default=2)
    args = ap.parse_args()
    import sparseflow  # noqa: F401

    print(f"bn cpu preset at sparse width {args.sparse_width}: {args.optimizers} × "
          f"{args.variants}; {os.cpu_count()} CPUs, --jobs {args.jobs}, --vectorize off")
    results = {}
    for backend in ("masked", "auto"):
        spec = sliced_spec(args.optimizers, args.variants, args.sparse_width, backend)
        wall, per_fraction, finished = run_side(spec, args.jobs)
        results[backend] = (wall, per_fraction)
        print(f"  backend={backend:<6} {finished} runs in {wall / 60:6.1f} min")
    (wm, fm), (wa, fa) = results["masked"], results["auto"]
    print("sparse runs' summed training time per dense-width fraction (auto / masked):")
    for frac in sorted(fm):
        print(f"  {frac:.1f}: masked {fm[frac] / 60:6.1f} min, auto {fa.get(frac, 0) / 60:6.1f} "
              f"min, ratio {fa.get(frac, 0) / fm[frac]:.2f}")
    print(f"ratio study wall time auto / masked: {wa / wm:.2f}x "
          f"({wa / 60:.1f} vs {wm / 60:.1f} min)")


if __name__ == "__main__":
    main()
