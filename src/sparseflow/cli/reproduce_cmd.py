"""``sparseflow reproduce NAME``: run one of the paper's experiments and write its report."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console

from sparseflow.cli import slurm_opts as so
from sparseflow.cli.plugin_opt import load as load_plugins
from sparseflow.cli.plugin_opt import plugin_option
from sparseflow.errors import ConfigError
from sparseflow.presets import PRESETS


def reproduce(
    ctx: typer.Context,
    name: str = typer.Argument(..., help=f"Preset: {', '.join(PRESETS)}."),
    scale: str = typer.Option("cpu", "--scale", help="cpu (8,000 Fashion-MNIST images, 10 epochs: "
                              "about an hour on 2 cores), laptop (all 60,000 images, to "
                              "convergence: ≤ 2 h on 2 cores) or full (the paper's grid; a GPU "
                              "machine or a cluster)."),
    directory: Path | None = typer.Option(None, "--dir", help="Study directory (default "
                                          "runs/paper-<name>-<scale>)."),
    jobs: int | None = typer.Option(None, "--jobs", help="Parallel workers (default: all "
                                    "cores)."),
    executor: str = typer.Option("local", "--executor", help="local, ray or slurm."),
    address: str | None = typer.Option(None, "--address", help="Ray cluster address."),
    show: bool = typer.Option(False, "--show", help="Print the preset's study file and stop."),
    plugin: list[str] = plugin_option(),
    slurm_cluster: str | None = so.CLUSTER,
    slurm_partition: str | None = so.PARTITION,
    slurm_time_min: int | None = so.TIME_MIN,
    slurm_cpus: int | None = so.CPUS,
    slurm_gpus: int | None = so.GPUS,
    slurm_mem_gb: float | None = so.MEM_GB,
    slurm_array_parallelism: int | None = so.PARALLELISM,
    slurm_task_minutes: float | None = so.TASK_MINUTES,
    slurm_runs_per_task: int | None = so.RUNS_PER_TASK,
    slurm_sbatch: list[str] = so.SBATCH,
) -> None:
    """Run the preset study (resumable), then print its p-value table and write its report."""
    from sparseflow.cli.study_progress import StudyProgress
    from sparseflow.presets import preset_path
    from sparseflow.report import build_report
    from sparseflow.studies import expand, load_spec, run_study

    console = Console()
    if jobs is not None and jobs < 1:
        raise ConfigError(f"--jobs must be ≥ 1, got {jobs}")
    path = preset_path(name, scale)
    if show:
        print(path.read_text(), end="")
        return
    load_plugins(plugin)
    plan = expand(load_spec(path))
    slurm = so.from_params(plan.spec.slurm, ctx.params)
    directory = directory or Path("runs") / f"paper-{name}-{scale}"
    progress = StudyProgress(console, plan.spec.name, plan.runs)
    try:
        outcome = run_study(plan, directory, jobs=jobs, executor=executor, address=address,
                            on_start=progress.start, on_outcome=progress.advance,
                            slurm=slurm)
    finally:
        progress.stop()
    console.print(f"{outcome.finished} runs finished, {outcome.failed} failed, "
                  f"{outcome.skipped} already done, of {outcome.planned} planned")
    from sparseflow.cli.study_cmd import print_tests

    print_tests(console, directory)
    files = build_report(directory)
    console.print(f"report: {files.html}")


def register(app: typer.Typer) -> None:
    """Attach the command to ``app``."""
    app.command("reproduce")(reproduce)
