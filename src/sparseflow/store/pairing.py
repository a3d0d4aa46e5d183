"""The one rule that pairs a sparse run with its dense twin (export, tables, report, plan).

A study's **sparse-only axes** are the swept keys no dense run carries: an axis whose key starts
with ``sparsity.`` (the mask method, its options) changes only the sparse runs, so the plan
trains one dense twin per (other axes' values, dense width, seed) and leaves the sparse-only
axes out of the dense run's cell. A dense run then matches **every** sparse run equal to it on
``dense_width``, ``seed`` and every other axis: one dense twin, many sparse partners.

Everything here works on plain mappings (an export row, or a run's identity and cell), so the
store, the analysis and the plan's power check pair runs the same way.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

#: Where a sparse run and its dense twin must agree besides the swept axes.
PAIR_ON: tuple[str, ...] = ("dense_width", "seed")


def freeze(value: Any) -> Any:
    """A hashable, comparable key value: lists → tuples, dicts → sorted items, NaN → None (a
    missing axis read from a data frame is NaN, and NaN != NaN)."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, list | tuple):
        return tuple(freeze(v) for v in value)
    if isinstance(value, dict):
        return tuple(sorted((k, freeze(v)) for k, v in value.items()))
    return value


def is_sparse_only_key(key: str) -> bool:
    """Whether a swept config key changes only the sparse runs of a study (``sparsity.*``)."""
    return key.startswith("sparsity.")


def _carried(row: Mapping[str, Any], axis: str) -> bool:
    return freeze(row.get(axis)) is not None


def sparse_only_axes(rows: Sequence[Mapping[str, Any]], axes: Collection[str]) -> tuple[str, ...]:
    """The axes of ``axes`` that no dense row carries while some sparse row does (an axis that
    is missing or None everywhere is an ordinary axis: all runs agree on it), in ``axes`` order.
    """
    dense = [r for r in rows if r.get("kind") == "dense"]
    sparse = [r for r in rows if r.get("kind") == "sparse"]
    out = []
    for axis in axes:
        if not any(_carried(r, axis) for r in dense) and any(_carried(r, axis) for r in sparse):
            out.append(axis)
    return tuple(out)


@dataclass(frozen=True)
class Matching:
    """Which dense row is each sparse row's twin (indices into the rows given).

    ``twin[i]`` is the dense twin of sparse row i. ``clashes`` names the first two rows of one
    kind that share a key (neither is paired: no partner can be chosen), as (kind, i, j, key).
    ``unmatched_sparse`` / ``unmatched_dense``: rows of that kind that found no partner.
    """

    twin: dict[int, int] = field(default_factory=dict)
    clashes: tuple[tuple[str, int, int, dict[str, Any]], ...] = ()
    unmatched_sparse: int = 0
    unmatched_dense: int = 0

    def partners(self) -> dict[int, list[int]]:
        """Dense row index → its sparse partners' indices, in row order."""
        out: dict[int, list[int]] = {}
        for s, d in self.twin.items():
            out.setdefault(d, []).append(s)
        return out


def match(rows: Sequence[Mapping[str, Any]], axes: Sequence[str],
          sparse_only: Collection[str] | None = None, *, on: Sequence[str] = PAIR_ON,
          keep: Callable[[Mapping[str, Any]], bool] | None = None) -> Matching:
    """Pair the sparse rows of ``rows`` with their dense twins.

    A sparse row is keyed on ``on + axes``; a dense row on ``on`` and the axes that are not
    sparse-only (``sparse_only``; default :func:`sparse_only_axes` of the rows). A sparse row's
    twin is the dense row whose key is the sparse row's key without the sparse-only axes.
    Rows of another kind, and rows ``keep`` rejects, take no part. Missing keys read as None.
    """
    if sparse_only is None:
        sparse_only = sparse_only_axes(rows, axes)
    dense_axes = [a for a in axes if a not in sparse_only]
    keyed: dict[str, dict[tuple[Any, ...], list[int]]] = {"sparse": {}, "dense": {}}
    for i, row in enumerate(rows):
        kind = row.get("kind")
        if kind not in keyed or (keep is not None and not keep(row)):
            continue
        cols = [*on, *(axes if kind == "sparse" else dense_axes)]
        keyed[kind].setdefault(tuple(freeze(row.get(k)) for k in cols), []).append(i)
    clashes = []
    for kind, by_key in keyed.items():
        cols = [*on, *(axes if kind == "sparse" else dense_axes)]
        clashes += [(kind, idx[0], idx[1], dict(zip(cols, key, strict=True)))
                    for key, idx in by_key.items() if len(idx) > 1]
    dense = {k: idx[0] for k, idx in keyed["dense"].items() if len(idx) == 1}
    keep_at = [i for i, a in enumerate(axes) if a not in sparse_only]
    n_on = len(on)
    twin: dict[int, int] = {}
    n_sparse = 0
    for key, idx in keyed["sparse"].items():
        n_sparse += len(idx)
        dkey = (*key[:n_on], *(key[n_on + i] for i in keep_at))
        if len(idx) == 1 and dkey in dense:
            twin[idx[0]] = dense[dkey]
    n_dense = sum(len(idx) for idx in keyed["dense"].values())
    return Matching(twin=twin, clashes=tuple(clashes), unmatched_sparse=n_sparse - len(twin),
                    unmatched_dense=n_dense - len(set(twin.values())))
