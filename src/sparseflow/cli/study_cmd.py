"""``sparseflow study {plan,run,collect,status,export,tests,correlate}``."""

from __future__ import annotations

import math
import sys
import time
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

from sparseflow.cli import slurm_opts as so
from sparseflow.cli.plugin_opt import load as load_plugins
from sparseflow.cli.plugin_opt import plugin_option
from sparseflow.errors import ConfigError, DataError, check_output_dir
from sparseflow.utils.fmt import human_duration

study_app = typer.Typer(help="Factorial SC-SDC studies: plan, run, inspect, test.",
                        no_args_is_help=True)

ALPHA = typer.Option(0.05, "--alpha", help="Significance level (bold when p ≤ alpha).")


def _check_metric(metric: str) -> None:
    """Refuse a metric that is no per-run number of the export (before any work is done)."""
    from sparseflow.store.export import METRICS

    if metric not in METRICS:
        raise ConfigError(f"unknown --metric {metric!r}; metrics: {', '.join(METRICS)}")


def _max_runs_option() -> Any:
    from sparseflow.studies.plan import DEFAULT_MAX_RUNS

    return typer.Option(DEFAULT_MAX_RUNS, "--max-runs", help="Refuse a spec naming more runs "
                        "(counted before anything is expanded; guards against a runaway axis).")


MAX_RUNS = _max_runs_option()
ALL_RUNS = typer.Option(False, "--all-runs", help="Include every stored run, also those the "
                        "current spec no longer names (default: the latest plan's runs).")


def _spec_and_plan(spec_path: Path, max_runs: int) -> Any:
    from sparseflow.studies import expand, load_spec

    if max_runs < 1:
        raise ConfigError(f"--max-runs must be ≥ 1, got {max_runs}")
    return expand(load_spec(spec_path), max_runs=max_runs)


@study_app.command("plan")
def plan_cmd(
    spec: Path = typer.Argument(..., help="Study YAML."),
    jobs: int | None = typer.Option(None, "--jobs", help="Parallel runs the estimate is for "
                                    "(default: all cores, as study run)."),
    vectorize: str = typer.Option("auto", "--vectorize", help="auto, on or off, as study run."),
    max_group: int = typer.Option(8, "--max-group", help="Most runs in one batched group, as "
                                  "study run."),
    directory: Path | None = typer.Option(None, "--dir", help="Study directory of a resumed "
                                          "study: its finished runs are skipped and their "
                                          "measured durations used."),
    test: str = typer.Option("wilcoxon", help="Test of the table: wilcoxon (paired), ttest "
                             "(paired), mannwhitney."),
    alpha: float = typer.Option(0.05, "--alpha", help="Significance level each cell of the "
                                "table must be able to reach."),
    max_runs: int = MAX_RUNS,
    plugin: list[str] = plugin_option(),
) -> None:
    """Print what a study would run: counts per kind, cells whose test cannot reach --alpha
    with their pairs, and the wall time measured on this machine."""
    from sparseflow.analysis.stats import TESTS
    from sparseflow.studies.executor import default_jobs
    from sparseflow.studies.timing import startup_s

    started = startup_s()  # first: a fresh process's start-up, what each worker pays
    if test not in TESTS:
        raise ConfigError(f"--test must be one of {', '.join(TESTS)}, not {test!r}")
    if not 0 < alpha < 1:
        raise ConfigError(f"--alpha must be in (0, 1), got {alpha}")
    if jobs is not None and jobs < 1:
        raise ConfigError(f"--jobs must be ≥ 1, got {jobs}")
    from sparseflow.studies.batching import MODES

    if vectorize not in MODES:
        raise ConfigError(f"--vectorize must be one of {', '.join(MODES)}, not {vectorize!r}")
    if max_group < 1:
        raise ConfigError(f"--max-group must be ≥ 1, got {max_group}")
    console = Console()
    load_plugins(plugin)
    t0 = time.perf_counter()
    plan = _spec_and_plan(spec, max_runs)
    expand_s = time.perf_counter() - t0
    _print_counts(console, plan)
    _warn_pairs(console, plan, test, alpha)
    _print_estimate(console, plan, jobs or default_jobs(), vectorize, max_group, directory,
                    started, expand_s)


def _print_counts(console: Console, plan: Any) -> None:
    table = Table(title=f"study {plan.spec.name}")
    table.add_column("what")
    table.add_column("count", justify="right")
    for key, value in plan.counts().items():
        table.add_row(key.replace("_", " "), f"{value:,}")
    console.print(table)
    axes = ", ".join(f"{k} ({len(v)})" for k, v in plan.spec.axes.items()) or "none"
    console.print(f"axes: {axes}; variants: {', '.join(plan.spec.variants)}; dense widths: "
                  f"{plan.spec.scsdc.widths()} vs sparse width {plan.spec.scsdc.sparse_width}",
                  soft_wrap=True)
    select = plan.spec.select
    if select is not None:
        n = len(plan.spec.axes[select.axis])
        console.print(f"select: every {select.axis} value is trained; per kind and group of "
                      f"{n} runs that differ only in {select.axis}, the one with the best "
                      f"{select.metric} is kept, so the tests compare "
                      f"{plan.counts()['selected_pairs']:,} selected pairs (validation "
                      "chooses, the test set compares)", soft_wrap=True, markup=False)
    only = plan.sparse_only_axes()
    if only:
        per = math.prod(len(plan.spec.axes[a]) for a in only)
        console.print(f"sparse-only axes: {', '.join(only)} (no dense run carries them): each "
                      f"of the {plan.counts()['dense_runs']:,} dense twins is trained once and "
                      f"paired with the {per} sparse runs of its cell, width and seed",
                      soft_wrap=True, markup=False)


#: Cells named one per line before the rest are summed up in one.
_MAX_CELL_LINES = 12


def _warn_pairs(console: Console, plan: Any, test: str, alpha: float) -> None:
    """One yellow line per cell of the default table that cannot reach alpha."""
    from sparseflow.studies.power_check import too_few_pairs

    lines = too_few_pairs(plan, test, alpha)
    shown = lines if len(lines) <= _MAX_CELL_LINES else lines[:_MAX_CELL_LINES - 1]
    for line in shown:
        console.print(line, style="yellow", markup=False, soft_wrap=True)
    if len(shown) < len(lines):
        console.print(f"… and {len(lines) - len(shown)} more cells with too few pairs",
                      style="yellow", markup=False, soft_wrap=True)


def _print_estimate(console: Console, plan: Any, jobs: int, vectorize: str, max_group: int,
                    directory: Path | None, started: float | None, expand_s: float) -> None:
    from sparseflow.studies import estimate_study

    try:
        est = estimate_study(plan, jobs=jobs, vectorize=vectorize, max_group=max_group,
                       study_dir=directory, startup_s=started,
                       driver_s=(started or 0.0) + expand_s)
    except DataError as exc:  # the plan stands; only the estimate needs the data
        console.print(f"no time estimate: {exc}")
        return
    except (RuntimeError, MemoryError) as exc:  # a run shape that cannot even be probed here
        message = " ".join(str(exc).split()) or type(exc).__name__
        console.print(f"no time estimate: probing a run failed ({type(exc).__name__}: "
                      f"{message})", markup=False, soft_wrap=True)
        return
    if not est.runs:
        console.print(f"nothing left to train: all {est.skipped} runs of the plan are finished")
        return
    console.print(f"estimated wall time: ≈ {human_duration(est.wall_s)} with --jobs {jobs} "
                  f"for {est.runs:,} runs (≈ {human_duration(est.compute_s)} of compute)",
                  soft_wrap=True)
    console.print(f"how: {est.how()}", soft_wrap=True, markup=False)


@study_app.command("run")
def run_cmd(
    ctx: typer.Context,
    spec: Path = typer.Argument(..., help="Study YAML."),
    directory: Path = typer.Option(..., "--dir", help="Study directory (store and runs)."),
    jobs: int | None = typer.Option(None, "--jobs", help="Parallel runs (default: all cores)."),
    fail_fast: bool = typer.Option(False, "--fail-fast", help="Stop at the first failed run."),
    vectorize: str = typer.Option("auto", "--vectorize", help="auto: train same-shape runs as "
                                  "batched groups where that measures faster (decided once "
                                  "per group shape and study); on: always batched (numbers "
                                  "independent of the load); off: every run alone."),
    max_group: int = typer.Option(8, "--max-group", help="Most runs in one batched group."),
    executor: str = typer.Option("local", "--executor", help="local (process pool), ray, or "
                                 "slurm (a submitit job array)."),
    address: str | None = typer.Option(None, "--address", help="Ray cluster address (ray "
                                       "executor; default: RAY_ADDRESS or a local cluster)."),
    metric: str = typer.Option("test_accuracy", help="Metric of the final p-value table."),
    rebuild: bool = typer.Option(False, "--rebuild", help="Move a damaged DIR/study.sqlite "
                                 "aside and rebuild it from the run directories."),
    max_runs: int = MAX_RUNS,
    plugin: list[str] = plugin_option(),
    no_wait: bool = so.NO_WAIT,
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
    """Run (or resume) a study, then print its p-value table (of the runs this spec names)."""
    from sparseflow.cli.study_progress import StudyProgress
    from sparseflow.studies import run_study

    console = Console()
    _check_metric(metric)
    if jobs is not None and jobs < 1:
        raise ConfigError(f"--jobs must be ≥ 1, got {jobs}")
    load_plugins(plugin)  # before the spec's components are validated
    plan = _spec_and_plan(spec, max_runs)
    slurm = so.from_params(plan.spec.slurm, ctx.params)
    if no_wait and executor != "slurm":
        raise ConfigError("--no-wait is for --executor slurm (the other executors' workers "
                          "end with the driver); drop it or add --executor slurm")
    check_output_dir(directory, "--dir")  # before training, not after the first run
    progress = StudyProgress(console, plan.spec.name, plan.runs)
    try:
        outcome = run_study(plan, directory, jobs=jobs, fail_fast=fail_fast,
                            vectorize=vectorize, max_group=max_group, executor=executor,
                            address=address, on_start=progress.start,
                            on_outcome=progress.advance, rebuild=rebuild, plugins=plugin,
                            on_note=lambda line: console.print(line, style="yellow", markup=False,
                                                              soft_wrap=True),
                            slurm=slurm, wait=not no_wait)
    finally:
        progress.stop()
    console.print(f"{outcome.finished} runs finished, {outcome.failed} failed, "
                  f"{outcome.skipped} already done, of {outcome.planned} planned")
    if no_wait:
        console.print(f"submitted; `sparseflow study status {directory}` shows the tasks, "
                      f"`sparseflow study collect {directory}` records what they finished",
                      soft_wrap=True, markup=False)
        return
    if outcome.aborted:
        console.print("[yellow]stopped early; run the same command again to resume[/]")
    print_tests(console, directory, metric=metric)
    console.print(f"results: {directory}  (export: sparseflow study export {directory})")


@study_app.command("status")
def status_cmd(directory: Path = typer.Argument(..., help="Study directory.")) -> None:
    """Runs by status, and the errors of failed runs."""
    from sparseflow.store import StudyStore, driver_alive

    console = Console()
    with StudyStore(directory, readonly=True) as store:
        info = store.study_info() or {}
        counts = store.counts()
        runs = store.runs()
        failed = store.runs("failed")[:20]
        damaged = store.damaged_runs()
    if counts["running"] and driver_alive(directory) is False:
        # No driver holds the study: those runs lost theirs (killed, crashed); the next
        # `study run` marks them interrupted and resumes them. Shown as they are.
        counts["interrupted"] += counts["running"]
        counts["running"] = 0
    total = sum(counts.values())
    console.print(f"study {info.get('name', '?')} in {directory}: {total} runs")
    table = Table()
    table.add_column("status")
    table.add_column("runs", justify="right")
    for status, n in counts.items():
        table.add_row(status, str(n))
    console.print(table)
    shared = _shared_line(runs)
    if shared:
        console.print(shared, soft_wrap=True, markup=False)
    if counts["interrupted"]:
        console.print(f"{counts['interrupted']} interrupted runs resume from their last "
                      "checkpoint: run the same `sparseflow study run` again")
    for rec in failed:
        console.print(f"[red]failed[/] {rec.run_key} {rec.cell}: {rec.error}")
    for key, problem in damaged[:20]:
        console.print(f"[red]damaged[/] {key}: {problem}", soft_wrap=True)
    if damaged:
        console.print(f"{len(damaged)} finished runs need training again; `sparseflow study "
                      f"run SPEC --dir {directory}` does it")
    _print_tasks(console, directory)


def _print_tasks(console: Console, directory: Path) -> None:
    """The Slurm tasks of the study (``DIR/slurm/jobs.json``): job id, state, runs."""
    from sparseflow.studies.slurm_jobs import jobs_path, load_tasks, task_states

    if not jobs_path(directory).is_file():
        return
    tasks = load_tasks(directory)
    states = task_states(directory, tasks)
    table = Table(title="slurm tasks")
    for name in ("job id", "state", "runs", "attempt", "error"):
        table.add_column(name, justify="right" if name in ("runs", "attempt") else "left")
    for task, state in zip(tasks[-50:], states[-50:], strict=True):
        table.add_row(task.job_id, state, str(len(task.run_keys)), str(task.attempt),
                      task.error[:120])
    console.print(table)
    active = sum(not t.settled for t in tasks)
    if active:
        console.print(f"{active} tasks not recorded yet; `sparseflow study collect "
                      f"{directory}` records what they finished", soft_wrap=True, markup=False)


@study_app.command("collect")
def collect_cmd(directory: Path = typer.Argument(..., help="Study directory.")) -> None:
    """Record the runs the study's Slurm tasks finished (or failed) since the driver stopped
    waiting; idempotent (a run is never recorded twice)."""
    from sparseflow.studies.collect import collect_study

    done = collect_study(directory)
    Console().print(f"recorded {done.finished} finished and {done.failed} failed runs; "
                    f"{done.active_tasks} tasks still active")


def _shared_line(records: list[Any]) -> str:
    """"dense runs: 16, 16 of them shared (the twin of 2–3 sparse runs each); sparse-only axes:
    sparsity.masker", or "" for a study without sparse-only axes."""
    from sparseflow.store.export import axis_columns, pairs
    from sparseflow.store.pairing import sparse_only_axes

    axes = axis_columns(records)
    rows = [{"kind": r.kind, **r.cell} for r in records]
    only = sparse_only_axes(rows, axes)
    if not only:
        return ""
    found = pairs(records)
    per: dict[str, int] = {}
    for key, (dense, _) in found.items():
        if key != dense.run_key:
            per[dense.run_key] = per.get(dense.run_key, 0) + 1
    shared = sorted(n for n in per.values() if n > 1)
    dense_n = sum(r.kind == "dense" for r in records)
    span = "" if not shared else (f" (the twin of {shared[0]} sparse runs each)"
                                  if shared[0] == shared[-1] else
                                  f" (the twin of {shared[0]}–{shared[-1]} sparse runs each)")
    return (f"dense runs: {dense_n}, {len(shared)} of them shared{span}; sparse-only axes: "
            f"{', '.join(only)}")


@study_app.command("export")
def export_cmd(
    directory: Path = typer.Argument(..., help="Study directory."),
    fmt: str = typer.Option("csv", "--format", help="csv or parquet."),
    table: str = typer.Option("runs", "--table", help="runs: one row per run; metrics: one "
                              "per run and epoch; gradflow: one per run, probe point and layer."),
    out: Path | None = typer.Option(None, "--out", help="File (default DIR/results.<fmt> for "
                                    "runs, DIR/metrics.<fmt>, DIR/gradflow.<fmt>)."),
    all_runs: bool = ALL_RUNS,
) -> None:
    """A table of the current plan's runs (--all-runs: every stored run): by default one row
    per run (identity, swept axes, status, metrics, gradient flow)."""
    from sparseflow.store import TABLES, StudyStore
    from sparseflow.store.scope import plan_scope

    if fmt not in ("csv", "parquet"):
        raise ConfigError(f"--format must be csv or parquet, not {fmt!r}")
    if table not in TABLES:
        raise ConfigError(f"--table must be one of {', '.join(TABLES)}, not {table!r}")
    name = "results" if table == "runs" else table
    with StudyStore(directory, readonly=True) as store:
        only, note = plan_scope(store, all_runs)
        path = store.export(out or directory / f"{name}.{fmt}", fmt, only=only, table=table)
    _note(note)
    Console().print(f"wrote {path}", soft_wrap=True)


def _note(note: str | None) -> None:
    # stderr: the note must not end up inside a CSV or markdown table piped from stdout.
    if note:
        print(note, file=sys.stderr)


def study_axes(directory: Path, all_runs: bool = False
          ) -> tuple[list[str], list[dict[str, Any]], Any]:
    """(the study's swept keys, ``variant`` last; its export rows; its select rule or None)."""
    from sparseflow.store import StudyStore
    from sparseflow.store.scope import plan_scope

    with StudyStore(directory, readonly=True) as store:
        spec = (store.study_info() or {}).get("spec", {})
        only, note = plan_scope(store, all_runs)
        results = store.results(only)
        rule = store.select_rule()
    _note(note)
    return [*spec.get("axes", {}), "variant"], results, rule


def _baseline(text: str, axes: list[str], results: list[dict[str, Any]]) -> tuple[str, Any]:
    """``--baseline AXIS=VALUE`` as (axis, the value as the runs hold it); ConfigError naming
    the valid axes or values."""
    sparse = [r for r in results if r.get("kind") == "sparse"]
    return _axis_value("--baseline", text, axes, sparse, "sparsity.masker=random",
                       "the study's sparse runs")


def where_runs(texts: list[str], axes: list[str],
           results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The runs that hold every ``--where AXIS=VALUE``. A run without the axis (the dense
    twin shared across a sparse-only axis) is kept: it pairs with every value."""
    for text in texts:
        axis, value = _axis_value("--where", text, axes, results, "data.name=cifar10",
                                  "the study's runs")
        results = [r for r in results if r.get(axis) is None or r.get(axis) == value]
    return results


def _axis_value(option: str, text: str, axes: list[str], results: list[dict[str, Any]],
                example: str, whose: str) -> tuple[str, Any]:
    """``AXIS=VALUE`` of ``option`` as (axis, the value as ``results`` hold it); ConfigError
    naming the valid axes or values."""
    from sparseflow.report.data import label

    axis, sep, value = text.partition("=")
    axis, value = axis.strip(), value.strip()
    if not sep or not axis or not value:
        raise ConfigError(f"{option} {text!r}: give AXIS=VALUE, e.g. {option} {example}")
    if axis not in axes:
        raise ConfigError(f"{option}: {axis!r} is not a swept axis of this study; axes: "
                          f"{', '.join(axes)}")
    values = list(dict.fromkeys(r.get(axis) for r in results if r.get(axis) is not None))
    found = [v for v in values if value in (label(v), str(v))]
    if not found:
        raise ConfigError(f"{option}: {axis}={value!r} is not a value of {whose}; values: "
                          f"{', '.join(label(v) for v in values)}")
    return axis, found[0]


def _layout_keys(axes: list[str], results: list[dict[str, Any]], rows: str | None,
                 cols: str | None, baseline: tuple[str, Any] | None) -> tuple[str, str]:
    """The table's (rows, cols): as given, else the defaults (``default_axes``); with a
    baseline the rows are its axis and the columns default to the other main axis."""
    from sparseflow.analysis.tables import default_axes

    n_values = {a: len({repr(r.get(a)) for r in results}) for a in axes}
    d_rows, d_cols = default_axes(axes, n_values)
    if baseline is not None:
        axis = baseline[0]
        if rows not in (None, axis):
            raise ConfigError(f"--rows {rows!r}: a --baseline on {axis} lays out the rows by "
                              f"{axis}; drop --rows or pick it")
        other = d_cols if d_rows == axis else d_rows
        cols = cols or (other if other != axis else "dense_width")
        if cols == axis:
            raise ConfigError(f"--cols {cols!r} is the --baseline's axis; pick another axis")
        return axis, cols
    rows = rows or d_rows
    cols = cols or (d_cols if rows == d_rows else
                    ("variant" if rows != "variant" else "dense_width"))
    return rows, cols


def print_tests(console: Console, directory: Path, *, metric: str = "test_accuracy",
                rows: str | None = None, cols: str | None = None, test: str = "wilcoxon",
                correction: str = "none", alternative: str = "greater", alpha: float = 0.05,
                fmt: str = "console", all_runs: bool = False,
                baseline: str | None = None, where: list[str] | None = None) -> None:
    """Print the study's p-value table: ``console`` (rich grid fitted to the terminal, caption,
    summary sentences), ``markdown`` or ``csv`` (stdout, nothing else). The one printer of
    ``study run``, ``study tests`` and ``reproduce``. ``baseline`` ("AXIS=VALUE"): every other
    value of AXIS against it (sparse runs on both sides) instead of sparse vs dense.
    ``where`` ("AXIS=VALUE" each): only the runs that hold those values (e.g. one dataset)."""
    from sparseflow.analysis import pvalue_table

    axes, results, rule = study_axes(directory, all_runs)
    results = where_runs(where or [], axes, results)
    base = _baseline(baseline, axes, results) if baseline is not None else None
    # A select axis is tuned away: never a default row or column (naming it is refused below).
    shown = [a for a in axes if rule is None or a != rule.axis]
    rows, cols = _layout_keys(shown, results, rows, cols, base)
    for key in (rows, cols):
        if key not in axes and key not in ("dense_width", "seed"):
            raise ConfigError(f"{key!r} is not a swept axis of this study; axes: "
                              f"{', '.join(axes)}, dense_width")
    try:
        table = pvalue_table(results, metric=metric, rows=rows, cols=cols, test=test,
                             correction=correction, alternative=alternative, alpha=alpha,
                             axes=axes, baseline=base, select=rule)
    except ValueError as exc:  # e.g. no finished run of the baseline yet
        raise ConfigError(str(exc)) from None
    if fmt == "markdown":
        print(table.to_markdown())
    elif fmt == "csv":
        print(table.to_csv(), end="")
    else:
        console.print(table.to_rich(width=console.width))


def check_test_options(metric: str, test: str, correction: str, alternative: str,
                        alpha: float, fmt: str) -> None:
    """Refuse a bad option of ``study tests`` before the store is read."""
    from sparseflow.analysis.stats import ALTERNATIVES, CORRECTIONS, TESTS

    _check_metric(metric)
    if test not in TESTS:
        raise ConfigError(f"--test must be one of {', '.join(TESTS)}, not {test!r}")
    if correction not in CORRECTIONS:
        raise ConfigError(f"--correction must be one of {', '.join(CORRECTIONS)}")
    if alternative not in ALTERNATIVES:
        raise ConfigError(f"--alternative must be one of {', '.join(ALTERNATIVES)}, "
                          f"not {alternative!r}")
    if fmt not in ("console", "markdown", "csv"):
        raise ConfigError(f"--format must be console, markdown or csv, not {fmt!r}")
    if not 0 < alpha < 1:
        raise ConfigError(f"--alpha must be in (0, 1), got {alpha}")


@study_app.command("tests")
def tests_cmd(
    directory: Path = typer.Argument(..., help="Study directory."),
    metric: str = typer.Option("test_accuracy", help="Metric compared (losses: lower is better)."),
    rows: str | None = typer.Option(None, help="Row axis (default: the first axis not tuned "
                                    "by the spec's select)."),
    cols: str | None = typer.Option(None, help="Column axis (default: variant)."),
    test: str = typer.Option("wilcoxon", help="wilcoxon (paired), ttest (paired), mannwhitney."),
    correction: str = typer.Option("none", help="Multiple comparisons: none, holm, bh."),
    alternative: str = typer.Option("greater", help="H1: greater = sparse better than dense "
                                    "(the paper's test), less = sparse worse, two-sided = "
                                    "either."),
    alpha: float = ALPHA,
    fmt: str = typer.Option("console", "--format", help="console, markdown or csv."),
    all_runs: bool = ALL_RUNS,
    baseline: str | None = typer.Option(
        None, "--baseline", help="AXIS=VALUE, e.g. sparsity.masker=random: compare every "
        "other value of AXIS (the rows) with it, sparse runs on both sides, paired by dense "
        "width, seed and every other axis; --alternative greater: the value better than the "
        "baseline."),
    where: list[str] = typer.Option([], "--where", help="AXIS=VALUE (repeatable), e.g. "
                                    "data.name=cifar10: only the runs that hold it (the "
                                    "paper's table per dataset)."),
) -> None:
    """Sparse vs dense per cell, pairs matched by (dense width, seed) — the paper's table: p,
    sparse − dense with its 95% CI, n, and what they say (over the current plan's runs;
    --all-runs: every stored run). With --baseline: method vs baseline instead. A spec with
    select: compares only the runs chosen by validation and says which values were chosen."""
    check_test_options(metric, test, correction, alternative, alpha, fmt)
    print_tests(Console(), directory, metric=metric, rows=rows, cols=cols, test=test,
                correction=correction, alternative=alternative, alpha=alpha, fmt=fmt,
                all_runs=all_runs, baseline=baseline, where=where)


@study_app.command("correlate")
def correlate_cmd(
    directory: Path = typer.Argument(..., help="Study directory."),
    signed: bool = typer.Option(False, help="Show τ with its sign (the paper shows |τ|)."),
    compare: bool = typer.Option(False, help="Also test the paper's ordering: |τ| of each EGF "
                                 "minus |τ| of each standard norm, with a 95% paired-bootstrap "
                                 "CI over runs (bold: the CI excludes 0)."),
    all_runs: bool = ALL_RUNS,
) -> None:
    """Kendall τ of each run-average gradient-flow measure with test loss and accuracy."""
    from sparseflow.analysis import kendall_table

    _, results, rule = study_axes(directory, all_runs)
    finished = [r for r in results if r.get("status") == "finished"]
    table = kendall_table(finished)
    print(table.to_markdown(absolute=not signed))
    n = {k: sum(r["kind"] == k for r in finished) for k in ("sparse", "dense")}
    # A correlation over configurations: every run counts, not only the ones a select chose.
    every = f" (every {rule.axis}, not only the runs select chose)" if rule else ""
    print(f"\nKendall tau-b over {n['sparse']} sparse and {n['dense']} dense finished runs"
          f"{every}; {'signed' if signed else '|tau|, as in the paper'}.")
    if not math.isfinite(table.cell("egf2", "sparse", "test_loss").tau):
        print("(too few runs for some cells)")
    if compare:
        _print_tau_differences(finished, n)


def _print_tau_differences(finished: list[dict[str, Any]], n: dict[str, int]) -> None:
    from sparseflow.analysis.correlation_diff import (
        differences_markdown,
        null_tau_se,
        tau_differences,
    )

    print("\n" + differences_markdown(tau_differences(finished)))
    se = ", ".join(f"{null_tau_se(v):.3f} ({k}, n={v})" for k, v in n.items())
    print(f"\n|τ_a| − |τ_b| over the same runs, 95% BCa paired-bootstrap CI (runs resampled, "
          f"2,000 resamples, seed 0). For scale, the null SE of a single τ: {se}.")


def register(app: typer.Typer) -> None:
    """Attach the study sub-app to ``app``."""
    app.add_typer(study_app, name="study")
