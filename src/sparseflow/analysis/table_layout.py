"""How a p-value table lays runs out: row and column values, each cell's runs, the axes pairs
match on (:func:`layout`), and a study's default rows and columns (:func:`default_axes`).

A sparse-only axis (one no dense run carries, :mod:`sparseflow.store.pairing`) may lay out the
table: a dense run then sits in every row (column) of its cell, as the twin of each value.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sparseflow.store.pairing import freeze, sparse_only_axes

_freeze = freeze  # the pairing rule's key form (lists → tuples, NaN → None)


def _order(values: Sequence[Any], given: Sequence[Any] | None) -> tuple[Any, ...]:
    """``given`` (frozen), else the distinct values in order of first appearance."""
    if given is not None:
        return tuple(_freeze(v) for v in given)
    return tuple(dict.fromkeys(values))


@dataclass(frozen=True)
class Layout:
    """A table's cells before any test: row and column values in display order, each cell's
    runs (``groups``), the axes pairs match on (``within``) and the sparse-only axes."""

    row_values: tuple[Any, ...]
    col_values: tuple[Any, ...]
    groups: dict[tuple[Any, Any], list[Mapping[str, Any]]]
    within: tuple[str, ...]
    sparse_only: tuple[str, ...]


def layout(rows: Sequence[Mapping[str, Any]], row_key: str, col_key: str, axes: Sequence[str],
           *, sparse_only: Sequence[str] | None = None, row_order: Sequence[Any] | None = None,
           col_order: Sequence[Any] | None = None) -> Layout:
    """Lay ``rows`` (runs, export rows) out by ``row_key`` × ``col_key`` as
    :func:`pvalue_table` does; ``axes``: the swept keys pairs match on. ``sparse_only``
    default: the axes (rows and columns included) that no dense run carries
    (:func:`sparseflow.store.pairing.sparse_only_axes`); a dense run sits in every row (column)
    of its cell when the row (column) key is one of them."""
    candidates = list(dict.fromkeys([*axes, row_key, col_key]))
    only = tuple(sparse_only_axes(rows, candidates) if sparse_only is None else sparse_only)
    within = tuple(a for a in axes if a not in (row_key, col_key) or a in only)
    row_vals = _order(_layout_values(rows, row_key, only), row_order)
    col_vals = _order(_layout_values(rows, col_key, only), col_order)
    return Layout(row_vals, col_vals, _groups(rows, row_key, col_key, row_vals, col_vals, only),
                  within, only)


def _layout_values(rows: Sequence[Mapping[str, Any]], key: str, only: Sequence[str]
                   ) -> list[Any]:
    """The values of a row/column key; a sparse-only key's come from the runs that carry it."""
    return [_freeze(r.get(key)) for r in rows
            if key not in only or r.get("kind") != "dense"]


def _groups(rows: Sequence[Mapping[str, Any]], row_key: str, col_key: str,
            row_vals: Sequence[Any], col_vals: Sequence[Any], only: Sequence[str]
            ) -> dict[tuple[Any, Any], list[Mapping[str, Any]]]:
    """(row value, column value) → the cell's runs; a dense run sits in every row (column) of
    its cell when the row (column) key is sparse-only."""
    groups: dict[tuple[Any, Any], list[Mapping[str, Any]]] = {}
    for r in rows:
        shared = r.get("kind") == "dense"
        rs = row_vals if shared and row_key in only else [_freeze(r.get(row_key))]
        cs = col_vals if shared and col_key in only else [_freeze(r.get(col_key))]
        for rv in rs:
            for cv in cs:
                groups.setdefault((rv, cv), []).append(r)
    return groups


def default_axes(axes: Sequence[str], n_values: Mapping[str, int]) -> tuple[str, str]:
    """Default (rows, cols) of a study's table: the first swept axis × ``variant`` — or, when
    the study has a single variant, × the next swept axis (e.g. the activation), so that a
    column never pools the very factor the study varies; ``dense_width`` when nothing else is
    left. ``axes`` are the swept keys in spec order, ``variant`` last."""
    rows = axes[0]
    others = [a for a in axes if a not in (rows, "variant")]
    if rows != "variant" and n_values.get("variant", 1) > 1:
        return rows, "variant"
    return rows, others[0] if others else "dense_width"
