"""``sparseflow demo``: the main job of the Quickstart.

Trains a sparse MLP and a dense MLP with the same number of active weights in every layer on
mnist1d (generated locally) and prints both results side by side.
"""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from sparseflow.config import build_config
from sparseflow.config.schema import ExperimentConfig


def same_capacity_counts(dense: ExperimentConfig) -> dict[str, int]:
    """Active weights per prunable layer of the dense config's model (its weight counts)."""
    from sparseflow.data import load_data
    from sparseflow.models import build_model
    from sparseflow.sparsity import prunable_parameters
    from sparseflow.train import make_generators

    data = load_data(dense.data)
    model = build_model(dense.model, data.input_shape, data.num_classes,
                        generator=make_generators(dense.seed)["init"])
    return {n: p.numel() for n, p in prunable_parameters(model).items()}


def demo(
    out: Path = typer.Option(Path("runs/demo"), "--out", help="Folder for the run directories."),
    sparse_width: int = typer.Option(256, help="Width of the sparse MLP."),
    dense_width: int = typer.Option(64, help="Width of the dense MLP."),
    epochs: int = typer.Option(30, help="Training epochs."),
    seed: int = typer.Option(0, help="Seed shared by both runs (same data order)."),
) -> None:
    """Train a same-capacity sparse/dense MLP pair on mnist1d and compare them."""
    from sparseflow.cli.progress import ProgressHook
    from sparseflow.train import run_experiment

    console = Console()
    base = {"name": "demo", "seed": seed, "data": {"name": "mnist1d", "num_samples": 5000},
            "model": {"hidden_layers": 2, "activation": "relu"},
            "optim": {"name": "adam", "lr": 0.001}, "train": {"epochs": epochs}}
    dense = build_config({**base, "model": {**base["model"], "width": dense_width}})
    counts = same_capacity_counts(dense)
    sparse = build_config({**base, "model": {**base["model"], "width": sparse_width},
                           "sparsity": {"layer_counts": counts}})
    results = {}
    for label, cfg in (("sparse", sparse), ("dense", dense)):
        hook = ProgressHook(console, f"{label} (width {cfg.model.width})")
        try:
            results[label] = run_experiment(cfg, out, hooks=[hook])
        finally:
            hook.stop()
    widths = {"sparse": sparse_width, "dense": dense_width}
    console.print(_side_by_side(results, widths, sum(counts.values())))


def _side_by_side(results: dict, widths: dict[str, int], capacity: int) -> Table:
    table = Table(title="Same-capacity sparse vs dense MLP on mnist1d")
    table.add_column("")
    for label in results:
        table.add_column(f"{label} (width {widths[label]})", justify="right")
    # A dense run has no mask: its active weights are all its prunable weights (= capacity).
    rows = [("active weights", lambda s: f"{s['active_weights'] or capacity:,}"),
            ("density", lambda s: f"{s['density']:.4f}"),
            ("test accuracy", lambda s: f"{100 * s['test_accuracy']:.2f}%"),
            ("test loss", lambda s: f"{s['test_loss']:.4f}"),
            ("epochs", lambda s: str(s["epochs"])),
            ("time", lambda s: f"{s['duration_s']:.1f} s"),
            ("run directory", None)]
    for name, fmt in rows:
        cells = [str(res.run_dir) if fmt is None else fmt(res.summary)
                 for res in results.values()]
        table.add_row(name, *cells)
    return table


def register(app: typer.Typer) -> None:
    """Attach the command to ``app``."""
    app.command("demo")(demo)
