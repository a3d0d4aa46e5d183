"""Shared helpers: interleaved timing (A, B, A, B, …) so both sides see the same machine load,
and the median of the repeats."""

from __future__ import annotations

import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path


def fresh_dir() -> Path:
    """A new temporary folder (runs must not be skipped as already finished)."""
    return Path(tempfile.mkdtemp(prefix="sparseflow-bench-"))


def side_by_side(a: Callable[[], object], b: Callable[[], object], repeats: int = 3,
                 warmup: bool = True) -> tuple[float, float]:
    """Median seconds of ``a`` and of ``b``, measured alternately."""
    if warmup:
        a()
        b()
    ta, tb = [], []
    for _ in range(repeats):
        t0 = time.perf_counter()
        a()
        ta.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        b()
        tb.append(time.perf_counter() - t0)
    return statistics.median(ta), statistics.median(tb)


def report(title: str, label_a: str, ta: float, label_b: str, tb: float, goal: str) -> None:
    """Print both timings and the ratio tb / ta."""
    print(f"{title}")
    print(f"  {label_a:<44} {ta:8.3f} s")
    print(f"  {label_b:<44} {tb:8.3f} s")
    print(f"  ratio {label_b} / {label_a}: {tb / ta:.2f}x   (goal: {goal})")
