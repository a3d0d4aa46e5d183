"""Benchmark 6: what GradientFlowMonitor costs inside a hand-written training loop.

A 2.1M-parameter MLP (784-1152-1024-10, SGD, batch 128, sparse 10% given as a name → bool mask,
gradients and weights masked as a real sparse run does), on CPU. Variants, measured alternately
in short blocks (A, B, C, ... repeated) so that they see the same machine load, each the median
of the repeats:

- plain loop (no monitor);
- ``GradientFlowMonitor`` on every step (all measures, exact float64 sums);
- the same with ``every=10``;
- ``measures="cheap"`` on every step (per-layer L2 norms from one ``torch._foreach_norm``);
- ``measures="cheap"`` with ``every=10``.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from sparseflow.gradflow import GradientFlowMonitor

WIDTHS = (784, 1152, 1024, 10)


def _setup(density: float) -> tuple[nn.Module, dict[str, torch.Tensor], torch.optim.Optimizer]:
    torch.manual_seed(0)
    layers: list[nn.Module] = []
    for a, b in zip(WIDTHS[:-1], WIDTHS[1:], strict=True):
        layers += [nn.Linear(a, b), nn.ReLU()]
    model = nn.Sequential(*layers[:-1])
    gen = torch.Generator().manual_seed(1)
    mask = {n: torch.rand(p.shape, generator=gen) < density
            for n, p in model.named_parameters() if p.dim() > 1}  # fmt: skip
    with torch.no_grad():
        for n, m in mask.items():
            model.get_parameter(n).mul_(m)
    return model, mask, torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)


def _loop(model: nn.Module, mask: dict, opt: torch.optim.Optimizer, steps: int,
          batches: list, monitor: GradientFlowMonitor | None) -> Callable[[], None]:  # fmt: skip
    params = {n: model.get_parameter(n) for n in mask}

    def run() -> None:
        for i in range(steps):
            x, y = batches[i % len(batches)]
            opt.zero_grad(set_to_none=True)
            F.cross_entropy(model(x), y).backward()
            if monitor is not None:
                monitor.step()  # raw gradient, before masking (as the docstring says)
            for n, p in params.items():
                p.grad.mul_(mask[n])
            opt.step()
            with torch.no_grad():
                for n, p in params.items():
                    p.mul_(mask[n])
        if monitor is not None:
            monitor.history  # noqa: B018  (cheap mode: bring pending values to the host)

    return run


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    # Short blocks, many repeats: the variants alternate finely, so a busy machine's load
    # falls on all of them alike (every=10 measures once per block of 10 steps).
    ap.add_argument("--steps", type=int, default=10, help="training steps per timed block")
    ap.add_argument("--repeats", type=int, default=30)
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--density", type=float, default=0.1)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    model, mask, opt = _setup(args.density)
    gen = torch.Generator().manual_seed(2)
    batches = [(torch.randn(args.batch_size, WIDTHS[0], generator=gen),
                torch.randint(0, WIDTHS[-1], (args.batch_size,), generator=gen))
               for _ in range(8)]  # fmt: skip
    variants = {
        "plain loop": None,
        "monitor, every step": {},
        "monitor, every=10": {"every": 10},
        "monitor, cheap, every step": {"measures": "cheap"},
        "monitor, cheap, every=10": {"measures": "cheap", "every": 10},
    }
    runs = {label: _loop(model, mask, opt, args.steps, batches,
                         None if kw is None else GradientFlowMonitor(model, mask=mask, **kw))
            for label, kw in variants.items()}  # fmt: skip
    times: dict[str, list[float]] = {label: [] for label in runs}
    for run in runs.values():  # warm-up
        run()
    for _ in range(args.repeats):
        for label, run in runs.items():
            t0 = time.perf_counter()
            run()
            times[label].append((time.perf_counter() - t0) / args.steps)
    n_params = sum(p.numel() for p in model.parameters())
    print(f"GradientFlowMonitor overhead: MLP {'-'.join(map(str, WIDTHS))} ({n_params / 1e6:.2f}M "
          f"parameters), batch {args.batch_size}, density {args.density}, "
          f"{torch.get_num_threads()} threads, median of {args.repeats} x {args.steps} steps")
    base = statistics.median(times["plain loop"])
    for label, ts in times.items():
        t = statistics.median(ts)
        print(f"  {label:<44} {t * 1e3:8.2f} ms/step   {t / base:5.2f}x")


if __name__ == "__main__":
    main()
