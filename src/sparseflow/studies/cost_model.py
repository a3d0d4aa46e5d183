"""Which run shapes the study estimate times, and what the others cost by the same measure.

A study is a factorial: every run group has one level of each swept axis, of the variant and of
its *size* (kind, width, dense width, runs in the group). Timing every distinct shape would cost
seconds each for a large study, so the probe times a design around a reference shape (the
plan's first): every size at the reference levels, then each other level of each factor, one at
a time, at the most expensive size; then, while the budget lasts, the remaining shapes from the
most expensive down.

The shapes not timed are predicted per component (step, evaluation, probe, …) by a log-linear
main-effects model fitted to the timed ones — with the design above, exactly "the reference
time × each factor's measured ratio". Interactions between factors (an optimizer that is
relatively dearer on a wider model) are what it ignores. A level never timed (the budget ran
out) has ratio 1.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from sparseflow.studies.timing import COMPONENTS, Throughput

#: Floor of a measured component, so that a zero (nothing to do) has a logarithm.
_TINY_S = 1e-9


@dataclass
class Shape:
    """One distinct group shape to time, by its factor levels."""

    levels: dict[str, str]  #: factor → level (repr of the value)
    cost: float = 0.0  #: a static proxy of its total cost, for ordering (larger first)
    work: float = 1.0  #: a static proxy of the work of timing it (weights × members)


def _matches(shape: Shape, want: Mapping[str, str]) -> bool:
    return all(shape.levels.get(f) == v for f, v in want.items())


def design(shapes: Sequence[Shape], factors: Sequence[str], size_factor: str,
           measure: Callable[[int], Throughput], total: Callable[[int, Throughput], float],
           in_budget: Callable[[bool, float], bool]) -> dict[int, Throughput]:
    """Time shapes (by index) in design order while ``in_budget(extra, seconds)`` allows the
    next one, expected to take ``seconds``; returns index → measured :class:`Throughput`.

    ``measure(i)`` times shape i, ``total(i, t)`` is its predicted total seconds from ``t``
    (to pick the most expensive size). ``in_budget(False, s)`` guards the design probes,
    ``in_budget(True, s)`` the extra ones. A probe is expected to take as long as the slowest
    one so far per unit of ``work``.
    """
    measured: dict[int, Throughput] = {}
    if not shapes:
        return measured
    ref = shapes[0].levels
    rate = [0.0]  # seconds of timing per unit of work, the largest seen

    def timed(i: int) -> Throughput:
        t0 = time.perf_counter()
        measured[i] = measure(i)
        rate[0] = max(rate[0], (time.perf_counter() - t0) / max(shapes[i].work, 1e-12))
        return measured[i]

    def allowed(i: int, extra: bool) -> bool:
        return not measured or in_budget(extra, rate[0] * shapes[i].work)

    def take(want: Mapping[str, str], fallback: Mapping[str, str], extra: bool = False) -> None:
        for pattern in (want, fallback):
            hit = next((i for i, s in enumerate(shapes) if _matches(s, pattern)), None)
            if hit is not None:
                if hit not in measured and allowed(hit, extra):
                    timed(hit)
                return

    sizes = sorted({s.levels[size_factor] for s in shapes},
                   key=lambda v: -max(s.cost for s in shapes if s.levels[size_factor] == v))
    for size in sizes:
        take({**ref, size_factor: size}, {size_factor: size})
    by_size = {shapes[i].levels[size_factor]: total(i, t) for i, t in measured.items()}
    big = max(by_size, key=by_size.__getitem__) if by_size else ref[size_factor]
    for f in factors:
        for level in dict.fromkeys(s.levels[f] for s in shapes):
            take({**ref, f: level, size_factor: big}, {f: level, size_factor: big})
    rest = sorted((i for i in range(len(shapes)) if i not in measured),
                  key=lambda i: -shapes[i].cost)
    for i in rest:
        if allowed(i, True):  # a cheaper one further down may still fit
            timed(i)
    return measured


def _columns(shapes: Sequence[Shape], factors: Sequence[str]) -> list[tuple[str, str]]:
    """One indicator per (factor, level) other than the reference's."""
    ref = shapes[0].levels
    return [(f, v) for f in factors
            for v in dict.fromkeys(s.levels[f] for s in shapes) if v != ref[f]]


def _row(shape: Shape, columns: Sequence[tuple[str, str]]) -> list[float]:
    return [1.0] + [float(shape.levels[f] == v) for f, v in columns]


def predict(shapes: Sequence[Shape], factors: Sequence[str],
            measured: Mapping[int, Throughput]) -> list[Throughput]:
    """Every shape's Throughput: its own measurement, else the main-effects model's."""
    columns = _columns(shapes, factors)
    timed = sorted(measured)
    x = np.array([_row(shapes[i], columns) for i in timed])
    fitted: dict[str, np.ndarray] = {}
    for comp in COMPONENTS:
        y = np.array([math.log(max(getattr(measured[i], comp), _TINY_S)) for i in timed])
        fitted[comp] = np.linalg.lstsq(x, y, rcond=None)[0]  # min-norm: untimed levels → 0
    out = []
    for i, shape in enumerate(shapes):
        if i in measured:
            out.append(measured[i])
            continue
        row = np.array(_row(shape, columns))
        values = {c: float(math.exp(row @ b)) for c, b in fitted.items()}
        out.append(Throughput(**{c: (v if v > 10 * _TINY_S else 0.0)
                                 for c, v in values.items()}))
    return out
