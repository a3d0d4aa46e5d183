"""Benchmark: one training step (forward + backward + mask enforcement + SGD-momentum step,
batch 128) of a sparse MLP of width 3,076 on Fashion-MNIST shapes (784 in, 10 out, 2 hidden
layers), every prunable layer at density d, with ``sparsity.backend`` masked, sparse and
compact, against its dense twin (width round(3,076·√d): the same active weights per hidden
layer; 308 at 1%). Goal: ≤ 3× the dense twin at ≤ 5% density (masked dense: ≈ 20–100×).

Then where the compact step's time goes: the CSR products alone (``torch.sparse.mm``,
``sampled_addmm``, from a profile of the same steps), their GFLOP/s, and their time against the
whole dense twin's step — the ratio no bookkeeping can get below.

Then the per-layer crossover behind ``auto``: forward + backward of one 3,076 × 3,076 layer,
sparse / masked, over densities.

The sides run alternately (A, B, C, D, A, B, …) in one process; medians of the repeats.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

import sparseflow  # noqa: F401
from sparseflow.config.schema import ModelConfig
from sparseflow.models import build_model
from sparseflow.sparsity import Mask, MaskEnforcer, prunable_parameters
from sparseflow.sparsity.backend import install_backend, trained_parameters

WIDTH, IN, OUT, BATCH = 3076, 784, 10, 128


def mlp(width: int) -> nn.Module:
    return build_model(ModelConfig(width=width, hidden_layers=2), (IN,), OUT,
                       generator=torch.Generator().manual_seed(0))


def random_mask(model: nn.Module, density: float) -> Mask:
    g = torch.Generator().manual_seed(1)
    return Mask({n: torch.rand(p.shape, generator=g) < density
                 for n, p in prunable_parameters(model).items()})


def stepper(width: int, density: float | None, backend: str) -> Callable[[], None]:
    """One training step of a fresh model (density None: dense)."""
    model = mlp(width)
    enforcer = None
    if density is not None:
        mask = random_mask(model, density)
        install_backend(model, mask, backend, torch.device("cpu"))
        enforcer = MaskEnforcer(model, mask)
        enforcer.apply_to_weights()
    opt = torch.optim.SGD(trained_parameters(model), lr=0.01, momentum=0.9)
    g = torch.Generator().manual_seed(2)
    x, y = torch.randn(BATCH, IN, generator=g), torch.randint(0, OUT, (BATCH,), generator=g)

    def step() -> None:
        if enforcer is not None:
            enforcer.before_step(None)
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()
        if enforcer is not None:
            enforcer.after_backward(None)
        opt.step()
        if enforcer is not None:
            enforcer.after_step(None)
    return step


def twin_width(density: float) -> int:
    """Width of the dense twin with the sparse net's active weights per hidden layer."""
    return round(WIDTH * density ** 0.5)


def interleaved(fns: list[Callable[[], None]], repeats: int, inner: int) -> list[float]:
    """Median seconds per call of each function, measured alternately."""
    for f in fns:
        f()
    times: list[list[float]] = [[] for _ in fns]
    for _ in range(repeats):
        for i, f in enumerate(fns):
            t0 = time.perf_counter()
            for _ in range(inner):
                f()
            times[i].append((time.perf_counter() - t0) / inner)
    return [statistics.median(t) for t in times]


def step_table(densities: list[float], repeats: int, inner: int) -> None:
    print(f"Training step, MLP {IN}-{WIDTH}-{WIDTH}-{OUT}, batch {BATCH}, "
          f"{torch.get_num_threads()} threads (ms per step)")
    print(f"  {'density':>7} {'twin':>5} {'dense twin':>10} {'masked':>8} {'sparse':>8} "
          f"{'compact':>8} {'masked/twin':>11} {'sparse/twin':>11} {'compact/twin':>12} "
          f"{'sparse/compact':>14}")
    for d in densities:
        twin = twin_width(d)
        t_dense, t_masked, t_sparse, t_compact = interleaved(
            [stepper(twin, None, ""), stepper(WIDTH, d, "masked"), stepper(WIDTH, d, "sparse"),
             stepper(WIDTH, d, "compact")], repeats, inner)
        print(f"  {d:>7.0%} {twin:>5} {t_dense * 1e3:>10.1f} {t_masked * 1e3:>8.1f} "
              f"{t_sparse * 1e3:>8.1f} {t_compact * 1e3:>8.1f} {t_masked / t_dense:>10.1f}x "
              f"{t_sparse / t_dense:>10.1f}x {t_compact / t_dense:>11.1f}x "
              f"{t_sparse / t_compact:>13.1f}x")


#: The profiler's names of the CSR products (``torch.sparse.mm`` dispatches to addmm).
SPARSE_OPS = ("aten::addmm", "aten::sparse_sampled_addmm")


def product_flops(density: float) -> float:
    """FLOPs of one compact step's sparse products: forward and weight gradient of every layer,
    input gradient of all but the first (2 FLOPs per active weight and example each)."""
    model = mlp(WIDTH)
    nnz = [round(p.numel() * density) for p in prunable_parameters(model).values()]
    return 2.0 * BATCH * (2 * sum(nnz) + sum(nnz[1:]))


def kernel_table(densities: list[float], steps: int) -> None:
    print("Compact step: the sparse products alone (profiled) against the dense twin's step")
    print(f"  {'density':>7} {'step ms':>8} {'products ms':>11} {'share':>6} {'GFLOP/s':>8} "
          f"{'products/twin':>13}")
    for d in densities:
        step, twin = stepper(WIDTH, d, "compact"), stepper(twin_width(d), None, "")
        t_twin = interleaved([twin], 3, steps)[0]
        for _ in range(2):
            step()
        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
            t0 = time.perf_counter()
            for _ in range(steps):
                step()
            t_step = (time.perf_counter() - t0) / steps
        t_ops = sum(e.self_cpu_time_total for e in prof.key_averages()
                    if e.key in SPARSE_OPS) / 1e6 / steps  # µs → s per step
        print(f"  {d:>7.0%} {t_step * 1e3:>8.1f} {t_ops * 1e3:>11.1f} {t_ops / t_step:>5.0%} "
              f"{product_flops(d) / t_ops / 1e9:>8.1f} {t_ops / t_twin:>12.1f}x")


def layer_step(density: float, backend: str) -> Callable[[], None]:
    layer = nn.Linear(WIDTH, WIDTH)
    wrapper = nn.Sequential(layer)
    mask = random_mask(wrapper, density)
    install_backend(wrapper, mask, backend, torch.device("cpu"))
    enforcer = MaskEnforcer(wrapper, mask)
    enforcer.apply_to_weights()
    x = torch.randn(BATCH, WIDTH, requires_grad=True)

    def step() -> None:
        enforcer.before_step(None)
        layer.weight.grad = None
        wrapper(x).sum().backward()
        enforcer.after_backward(None)
    return step


def crossover_table(densities: list[float], repeats: int, inner: int) -> None:
    print(f"One {WIDTH}x{WIDTH} Linear, forward + backward (ms): the crossover behind auto")
    print(f"  {'density':>7} {'masked':>8} {'sparse':>8} {'sparse/masked':>13}")
    for d in densities:
        t_masked, t_sparse = interleaved([layer_step(d, "masked"), layer_step(d, "sparse")],
                                         repeats, inner)
        print(f"  {d:>7.0%} {t_masked * 1e3:>8.1f} {t_sparse * 1e3:>8.1f} "
              f"{t_sparse / t_masked:>12.2f}x")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--densities", type=float, nargs="+", default=[0.01, 0.05, 0.10, 0.25])
    ap.add_argument("--crossover", type=float, nargs="+",
                    default=[0.01, 0.02, 0.05, 0.10, 0.25])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--inner", type=int, default=3, help="steps per timed repeat")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    step_table(args.densities, args.repeats, args.inner)
    kernel_table(args.densities, args.repeats * args.inner)
    crossover_table(args.crossover, args.repeats, args.inner)


if __name__ == "__main__":
    main()
