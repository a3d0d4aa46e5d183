"""``sparseflow pair``: the per-layer table of one same-capacity sparse/dense pair."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from sparseflow.config import load_config
from sparseflow.errors import ConfigError


def pair(
    config: Path | None = typer.Argument(None, help="Experiment YAML (defaults if omitted)."),
    sparse_width: int = typer.Option(..., "--sparse-width", help="Width W_S of the sparse net."),
    dense_width: int = typer.Option(..., "--dense-width", help="Width W_D of the dense twin."),
    set_: list[str] = typer.Option([], "--set", help="Dotted override (repeatable), e.g. "
                                   "sparsity.matching=total."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
) -> None:
    """Per-layer shapes, active counts, densities and init std of an SC-SDC pair, and totals."""
    from sparseflow.scsdc import pair_table
    from sparseflow.train.pairing import build_pair
    from sparseflow.train.preflight import preflight

    _refuse_width_overrides(set_)
    cfg = load_config(config, [*set_, f"model.width={sparse_width}",
                               f"sparsity.dense_width={dense_width}"])
    # A bad depth, a size that cannot fit: refused before anything is built.
    preflight(cfg, training=False)
    built = build_pair(cfg)
    table = pair_table(built.sparse, built.dense, built.counts, built.sparse_stds)
    data = table.to_dict()
    data["init_policy"] = cfg.sparsity.init_policy
    data["dense_init_std"] = built.dense_stds
    if as_json:
        print(json.dumps(data, indent=2))
        return
    console = Console()
    console.width = max(console.width, 132)  # the 9-column table must not wrap
    _print(console, table, cfg, built.dense_stds, sparse_width, dense_width)


#: Keys the width options set; a --set of one of them would be silently replaced.
_WIDTH_KEYS = {"model.width": "--sparse-width", "sparsity.dense_width": "--dense-width"}


def _refuse_width_overrides(items: list[str]) -> None:
    """ConfigError for ``--set model.width=…`` / ``--set sparsity.dense_width=…``."""
    for item in items:
        key = item.partition("=")[0].strip()
        if key in _WIDTH_KEYS:
            raise ConfigError(f"--set {key} conflicts with {_WIDTH_KEYS[key]}, which sets it; "
                              f"drop the --set and give the width with {_WIDTH_KEYS[key]}")


def _print(console: Console, table, cfg, dense_stds: dict[str, float], ws: int,
           wd: int) -> None:
    t = Table(title=f"SC-SDC pair: sparse width {ws} vs dense width {wd} "
                    f"({cfg.model.name}, matching {cfg.sparsity.matching}, "
                    f"init {cfg.sparsity.init_policy})")
    for col in ("layer", "sparse shape", "dense shape", "sparse weights", "active", "density",
                "dense weights", "init std S", "init std D"):
        t.add_column(col, justify="left" if col == "layer" else "right", no_wrap=True)
    for row in table.rows():
        std = row["init_std"]
        dstd = dense_stds.get(row["layer"])
        t.add_row(row["layer"], row["sparse_shape"], row["dense_shape"],
                  f"{row['sparse_total']:,}", f"{row['active']:,}", f"{row['density']:.4f}",
                  f"{row['dense_count']:,}", "" if std is None else f"{std:.4g}",
                  "" if dstd is None else f"{dstd:.4g}")
    console.print(t)
    np_ = table.to_dict()["non_pruned"]
    a = np_["all"]
    console.print(f"active weights: sparse {table.sparse_active:,} = dense "
                  f"{table.dense_weights:,}" if table.matched else
                  f"active weights: sparse {table.sparse_active:,}, dense {table.dense_weights:,}")
    console.print(f"not pruned (biases, norms, activations): sparse {a['sparse']:,}, dense "
                  f"{a['dense']:,} (difference {a['difference']:,}; not matched by SC-SDC)")


def register(app: typer.Typer) -> None:
    """Attach the command to ``app``."""
    app.command("pair")(pair)
