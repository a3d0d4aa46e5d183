"""``sparseflow train``: one run from a YAML config, with progress and a final table."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.console import Console

from sparseflow.cli.plugin_opt import load as load_plugins
from sparseflow.cli.plugin_opt import plugin_option
from sparseflow.config import config_id, dump_config, load_config


def train(
    config: Path | None = typer.Argument(None, help="Experiment YAML (defaults if omitted)."),
    set_: list[str] = typer.Option([], "--set", help="Dotted override, e.g. optim.lr=0.1 "
                                   "(repeatable)."),
    seed: int | None = typer.Option(None, "--seed", help="Replicate seed (overrides the file)."),
    out: Path = typer.Option(Path("runs"), "--out", help="Folder that holds run directories."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Print the resolved config, its id "
                                 "and run directory; train nothing."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
    plugin: list[str] = plugin_option(),
) -> None:
    """Train one run. Finished runs are not retrained; interrupted ones resume."""
    from sparseflow.errors import check_output_dir
    from sparseflow.train.preflight import preflight
    from sparseflow.train.run import run_dir_for, run_experiment

    console = Console()
    load_plugins(plugin)  # before the config names their components
    cfg = load_config(config, set_, seed)
    # Before any training: what the run would refuse (also in a dry run), and an output
    # folder that could not be written after minutes of training.
    data = preflight(cfg)
    check_output_dir(out, "--out")
    run_dir = run_dir_for(cfg, out)
    if dry_run:
        console.print_json(json.dumps(dump_config(cfg)))
        console.print(f"id: {config_id(cfg)}  seed: {cfg.seed}  kind: {cfg.kind}")
        console.print(f"run directory: {run_dir}")
        return
    from sparseflow.cli.progress import ProgressHook, summary_table

    hooks = [] if quiet else [ProgressHook(console, f"{cfg.kind} {config_id(cfg)}-s{cfg.seed}")]
    try:
        result = run_experiment(cfg, out, hooks=hooks, data=data)
    finally:
        for h in hooks:
            h.stop()
    if result.status == "already_finished":
        console.print(f"already finished: {result.run_dir} (nothing to do)")
    console.print(summary_table(result.summary, f"{cfg.name}: {cfg.kind} run {result.run_dir}"))
    s = result.summary
    console.print(f"epochs {s['epochs']}{' (early stop)' if s['stopped_early'] else ''}, "
                  f"{s['duration_s']:.1f} s, density {s['density']:.4f}")


def register(app: typer.Typer) -> None:
    """Attach the command to ``app``."""
    app.command("train")(train)
