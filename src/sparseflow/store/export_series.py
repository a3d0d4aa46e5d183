"""The long tables of ``study export --table metrics|gradflow``: one row per (run, epoch), and
one row per (run, probe point, layer).

Both tables start with the run's identity and axis columns, as in the runs table (``export.py``),
so they join on ``run_key`` and group by any axis without a merge. Only finished runs have
series. :data:`METRICS_COLUMN_DOCS` and :data:`GRADFLOW_COLUMN_DOCS` describe the fixed columns
(the README's tables are drawn from them); a value a run recorded under another name becomes an
extra column after the fixed ones (sorted), typed by its values. A name is one column: a fixed
column wins over an axis or an extra value of the same name.

The gradient-flow table is long, the shape pandas groups and pivots: each probe point gives one
row with ``layer`` = ``"all"`` holding the whole-network measures (``gf1`` … ``egf2_per_weight``),
then one row per layer holding that layer's values (``norm1`` … ``norm2_per_weight``); the other
group of columns is empty on each. A layer name is a parameter name (``hidden.0.linear.weight``),
so it is never ``"all"``::

    net = df[df.layer == "all"]                  # egf2 per (run, epoch)
    per_layer = df[df.layer != "all"].pivot_table(index=["run_key", "epoch"], columns="layer",
                                                  values="norm2")
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from sparseflow.store.export import IDENTITY, TYPES, axis_columns, identity, pairs
from sparseflow.store.records import RunRecord
from sparseflow.store.selection import SelectRule

METRICS_COLUMN_DOCS: dict[str, str] = {
    "epoch": "epoch number, 1 = the first completed epoch",
    "train_loss": "running training cross-entropy of the epoch (train mode)",
    "train_accuracy": "running training accuracy of the epoch (fraction, train mode)",
    "val_loss": "validation cross-entropy after the epoch (eval mode; empty when the epoch "
                "was not evaluated, see train.eval_val)",
    "val_accuracy": "validation accuracy after the epoch (fraction, eval mode)",
    "test_loss": "test cross-entropy after the epoch (eval mode; empty when the epoch was "
                 "not evaluated, see train.eval_test)",
    "test_accuracy": "test accuracy after the epoch (fraction, eval mode)",
    "lr": "learning rate of the epoch's last step",
    "seconds": "wall-clock seconds of the epoch",
}
#: The whole-network measures (``sparseflow.gradflow.MEASURES``; a test keeps them equal).
NETWORK_MEASURES: tuple[str, ...] = ("gf1", "gf2", "gf1_masked", "gf2_masked", "egf1", "egf2",
                                     "egf1_per_weight", "egf2_per_weight")
#: One layer's values (``per_layer`` of ``sparseflow.gradient_flow``; a test keeps them equal).
LAYER_MEASURES: tuple[str, ...] = ("norm1", "norm2", "norm1_raw", "norm2_raw", "active", "total",
                                   "density", "norm1_per_weight", "norm2_per_weight")
GRADFLOW_COLUMN_DOCS: dict[str, str] = {
    "point": "index of the probe point in the run's series (0 = the first)",
    "epoch": "epoch after which the probe measured (0 = before the first update)",
    "step": "optimizer steps done when the probe measured",
    "layer": "'all' on the row of the whole-network measures, else the layer's parameter name",
    "layer_index": "position of the layer among the measured layers (0 = the first); -1 on "
                   "the 'all' row",
    "gf1": "L1 norm of all raw gradients ('all' rows)",
    "gf2": "L2 norm of all raw gradients ('all' rows)",
    "gf1_masked": "L1 norm of the masked gradients ('all' rows)",
    "gf2_masked": "L2 norm of the masked gradients ('all' rows)",
    "egf1": "Effective Gradient Flow, L1: mean over layers of norm1 ('all' rows)",
    "egf2": "Effective Gradient Flow, L2: mean over layers of norm2 ('all' rows)",
    "egf1_per_weight": "mean over layers of norm1_per_weight ('all' rows)",
    "egf2_per_weight": "mean over layers of norm2_per_weight ('all' rows)",
    "norm1": "L1 norm of the layer's masked gradient (layer rows)",
    "norm2": "L2 norm of the layer's masked gradient (layer rows)",
    "norm1_raw": "L1 norm of the layer's raw gradient, pruned positions included (layer rows)",
    "norm2_raw": "L2 norm of the layer's raw gradient (layer rows)",
    "active": "active (unpruned) weights of the layer (layer rows)",
    "total": "weights of the layer (layer rows)",
    "density": "active / total (layer rows)",
    "norm1_per_weight": "norm1 / active, 0 for a layer without active weights (layer rows)",
    "norm2_per_weight": "norm2 / active, 0 for a layer without active weights (layer rows)",
}
METRICS_TYPES: dict[str, str] = {**{c: TYPES[c] for c in IDENTITY},
                                 **dict.fromkeys(METRICS_COLUMN_DOCS, "float"), "epoch": "int"}
GRADFLOW_TYPES: dict[str, str] = {
    **{c: TYPES[c] for c in IDENTITY}, **dict.fromkeys(GRADFLOW_COLUMN_DOCS, "float"),
    "point": "int", "epoch": "int", "step": "int", "layer": "str", "layer_index": "int",
    "active": "int", "total": "int"}

Series = Mapping[str, Sequence[dict[str, Any]]]


def _axes(records: Sequence[RunRecord], fixed: Mapping[str, str]) -> list[str]:
    """The axis columns of a series table: an axis named like one of its fixed columns is left
    out (the fixed column wins, as in the runs table)."""
    return [a for a in axis_columns(records) if a not in fixed]


def _extras(found: set[str], taken: Sequence[str]) -> list[str]:
    """Recorded keys that no fixed column names, sorted (a key named like a fixed or axis
    column is left out: the fixed column wins)."""
    return sorted(found - set(taken))


def metrics_table(records: Sequence[RunRecord], series: Series, rule: SelectRule | None = None
                  ) -> tuple[list[dict[str, Any]], list[str]]:
    """(rows, columns) of the metrics table: one row per (run, epoch) of ``series`` (run_key →
    that run's per-epoch rows, ``StudyStore.metrics``), runs in ``records`` order; ``rule``: the
    study's select rule (``pair_id`` as in the runs table)."""
    axes, partners = _axes(records, METRICS_COLUMN_DOCS), pairs(records, rule)
    head = [*IDENTITY, *axes]
    extra = _extras({k for r in records for m in series.get(r.run_key, ()) for k in m},
                    [*head, *METRICS_COLUMN_DOCS])
    columns = [*head, *METRICS_COLUMN_DOCS, *extra]
    rows = []
    for r in records:
        ident = identity(r, axes, partners.get(r.run_key))
        for m in series.get(r.run_key, ()):
            rows.append({**ident, **{k: m.get(k) for k in (*METRICS_COLUMN_DOCS, *extra)}})
    return rows, columns


def gradflow_table(records: Sequence[RunRecord], series: Series, rule: SelectRule | None = None
                   ) -> tuple[list[dict[str, Any]], list[str]]:
    """(rows, columns) of the gradient-flow table: per probe point of ``series`` (run_key →
    ``StudyStore.gradflow`` of that run) one ``"all"`` row, then one row per layer; ``rule``:
    the study's select rule (``pair_id`` as in the runs table)."""
    axes, partners = _axes(records, GRADFLOW_COLUMN_DOCS), pairs(records, rule)
    head = [*IDENTITY, *axes, "point", "epoch", "step", "layer", "layer_index"]
    points = [p for r in records for p in series.get(r.run_key, ())]
    taken = [*head, *GRADFLOW_COLUMN_DOCS, "per_layer"]
    net_extra = _extras({k for p in points for k in p}, taken)
    layer_extra = _extras({k for p in points for v in _layers(p).values() for k in v},
                          [*taken, *net_extra])
    net_cols, layer_cols = [*NETWORK_MEASURES, *net_extra], [*LAYER_MEASURES, *layer_extra]
    no_net, no_layer = dict.fromkeys(net_cols), dict.fromkeys(layer_cols)
    rows = []
    for r in records:
        ident = identity(r, axes, partners.get(r.run_key))
        for i, p in enumerate(series.get(r.run_key, ())):
            where = {**ident, "point": i, "epoch": p.get("epoch"), "step": p.get("step")}
            rows.append({**where, "layer": "all", "layer_index": -1,
                         **{k: p.get(k) for k in net_cols}, **no_layer})
            for j, (name, values) in enumerate(_layers(p).items()):
                rows.append({**where, "layer": name, "layer_index": j, **no_net,
                             **{k: values.get(k) for k in layer_cols}})
    return rows, [*head, *net_cols, *layer_cols]


def _layers(point: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """A probe point's per-layer values (layer name → values), in layer order."""
    per_layer = point.get("per_layer") or {}
    return {str(k): v for k, v in per_layer.items() if isinstance(v, dict)}
