"""How long ``study run`` will take on this machine, from measured throughput.

Per run group (as ``study run`` forms them: :func:`~sparseflow.studies.grouping.group_runs`,
vectorized or not), the seconds are the pieces the training code spends, counted from the
group's own config and dataset sizes::

    build + epochs · (steps · step + (n_val + n_test) · eval + checkpoint)
          + probe points · probe + K · ((n_train + n_val + n_test) · final eval + files)

with each piece timed on this machine by :mod:`sparseflow.studies.timing` (a few real steps of
the study's own run shapes, at their ``train.threads``), the shapes not timed predicted by
:mod:`sparseflow.studies.cost_model`. On resume, a group whose run shape has finished runs in
the store takes their measured ``duration_s`` (the training loop) instead, and finished runs
cost nothing.

The wall time replays the scheduler: groups in plan order, each to the first free worker (the
local pool), every worker paying its start-up (interpreter and imports, measured as this
process's own; loading the data; the one-time set-up of the first optimizer) before its first
group, and compute slowed in proportion
when workers × threads exceed the cores. Ignored: early stopping and divergence (every run
trains to its epoch cap, so the estimate is an upper bound for such studies), the progress a
checkpointed interrupted run has already made, and the driver's own store writes.
"""

from __future__ import annotations

import heapq
import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from sparseflow.config.schema import ExperimentConfig
from sparseflow.data import DataBundle, load_data
from sparseflow.prunable import prunable_parameters
from sparseflow.registry import MODELS
from sparseflow.studies.cost_model import Shape, design, predict
from sparseflow.studies.grouping import group_runs
from sparseflow.studies.plan import Plan
from sparseflow.studies.timing import Throughput, measure, warm_up
from sparseflow.train.evaluation import EvalPlan
from sparseflow.train.probe import on_probe_grid, probe_epochs
from sparseflow.train.vectorized import shape_key

#: Seconds the extra probes (beyond the design) may take in all …
PROBE_BUDGET_S = 2.5
#: … and the design probes (after the first, which always runs); both after the one-time
#: set-up (:func:`~sparseflow.studies.timing.warm_up`, about a second).
PROBE_LIMIT_S = 3.5
#: Prunable weights × members above which a group is timed with two of its members only.
BIG_GROUP = 10_000_000
#: A worker's interpreter start and imports when the caller did not measure its own.
DEFAULT_STARTUP_S = 2.0

#: Times one group: (its configs, their dataset, a folder for timed files) → Throughput.
Probe = Callable[[Sequence[ExperimentConfig], DataBundle, Path | None], Throughput]


@dataclass(frozen=True)
class Sizes:
    """What the cost counts of one dataset config: split sizes and the load time."""

    n_train: int
    n_val: int
    n_test: int
    load_s: float
    data: DataBundle | None = None


@dataclass
class Estimate:
    """The estimate of one ``study run`` invocation."""

    wall_s: float  #: expected wall time with ``jobs``
    compute_s: float  #: seconds of all groups, one after the other
    jobs: int
    workers: int  #: processes training (1: in the driver)
    groups: int  #: groups left to train
    runs: int  #: runs left to train
    skipped: int  #: finished runs of the plan already in the store
    shapes: int  #: distinct run shapes left
    timed: int  #: shapes timed by the probe
    from_store: int  #: groups timed by the store's durations
    probe_s: float  #: seconds the probe took
    load_s: float  #: seconds loading the datasets took (each worker does it once)
    warmup_s: float  #: a process's one-time set-up before its first build (each worker too)
    threads: int  #: intra-op threads per run (the largest train.threads)
    vectorized: bool  #: some groups have several runs
    early_stopping: bool  #: some run may stop before its cap (not modeled)
    notes: list[str] = field(default_factory=list)

    def how(self) -> str:
        """One line saying how the estimate was made."""
        parts = []
        if self.timed:
            parts.append(f"timed {self.timed} of {self.shapes} run shapes on this machine "
                         f"({self.probe_s:.1f} s, {self.threads} thread"
                         f"{'s' if self.threads > 1 else ''} per run)")
        if self.from_store:
            parts.append(f"{self.from_store} groups from the store's measured durations")
        if self.skipped:
            parts.append(f"{self.skipped} runs already finished")
        parts.append(f"{self.groups} {'vectorized ' if self.vectorized else ''}groups on "
                     f"{self.workers} worker{'s' if self.workers > 1 else ''}")
        if self.early_stopping:
            parts.append("early stopping not modeled: an upper bound")
        return "; ".join(parts + self.notes)


def _sizes(cfg: ExperimentConfig, cache: dict[str, Sizes], keep: bool) -> Sizes:
    key = cfg.data.model_dump_json()
    if key not in cache:
        t0 = time.perf_counter()
        data = load_data(cfg.data)
        cache[key] = Sizes(len(data.train), len(data.val), len(data.test),
                           time.perf_counter() - t0, data if keep else None)
    return cache[key]


def probe_points(cfg: ExperimentConfig) -> int:
    """Gradient-flow points with their own pass (fixed or full probe set) of a run trained to
    its epoch cap: the schedule's epochs, or with early stopping its grid up to the cap and the
    cap itself."""
    gf, epochs = cfg.gradflow, cfg.train.epochs
    if not gf.enabled or gf.probe_set == "batch":
        return 0
    if not cfg.train.early_stopping.enabled:
        return len(probe_epochs(epochs, gf.points))
    grid = 1 + sum(on_probe_grid(e, gf.points) for e in range(1, epochs + 1))
    return grid + (not on_probe_grid(epochs, gf.points))


def steps_per_epoch(cfg: ExperimentConfig, n_train: int) -> int:
    """Training steps of one epoch (as build_run counts them)."""
    bs = cfg.train.batch_size
    return max(n_train // bs if cfg.train.drop_last else -(-n_train // bs), 1)


def eval_examples(cfg: ExperimentConfig, sizes: Sizes) -> int:
    """Examples the per-epoch evaluations of a run trained to its epoch cap forward: each
    split times the epochs ``train.eval_val`` / ``train.eval_test`` evaluate it after."""
    plan = EvalPlan.from_config(cfg)
    return plan.passes("val") * sizes.n_val + plan.passes("test") * sizes.n_test


def loop_seconds(cfg: ExperimentConfig, sizes: Sizes, t: Throughput) -> float:
    """The group's training loop: every epoch's steps and checkpoint, the evaluations the
    config asks for, and the gradient-flow points."""
    epochs = cfg.train.epochs
    every = cfg.train.checkpoint_every
    steps = epochs * steps_per_epoch(cfg, sizes.n_train) * t.step_s
    return (steps + eval_examples(cfg, sizes) * t.eval_s_per_example
            + probe_points(cfg) * t.probe_s
            + (epochs // every if every else 0) * t.checkpoint_s)


def outside_seconds(cfg: ExperimentConfig, sizes: Sizes, t: Throughput, k: int) -> float:
    """Around the loop: building the group, each member's final evaluation and files."""
    n = sizes.n_train + sizes.n_val + sizes.n_test
    return t.build_s + k * (n * t.final_s_per_example + t.write_s)


def group_seconds(cfg: ExperimentConfig, sizes: Sizes, t: Throughput, k: int) -> float:
    """Seconds one group of ``k`` runs of ``cfg``'s shape takes (one process, alone)."""
    return loop_seconds(cfg, sizes, t) + outside_seconds(cfg, sizes, t, k)


def schedule(costs: Sequence[float], jobs: int, startup_s: float, *, cores: int,
             threads: int) -> tuple[float, int]:
    """(wall seconds, workers) of training groups of ``costs`` seconds (plan order) as
    ``study run`` does: in the driver when ``jobs`` is 1 or there is one group, else each to
    the first free of ``min(jobs, groups)`` workers, which start after ``startup_s``."""
    if not costs:
        return 0.0, 0
    if jobs == 1 or len(costs) <= 1:
        return float(sum(costs)), 1
    workers = min(jobs, len(costs))
    slow = max(1.0, workers * threads / max(cores, 1))  # oversubscribed cores share time
    free = [startup_s] * workers
    for cost in costs:
        heapq.heappush(free, heapq.heappop(free) + cost * slow)
    return max(free), workers


def stored_durations(study_dir: str | Path | None) -> tuple[set[str], dict[str, list[float]]]:
    """(finished run keys, run shape → measured training seconds of its finished runs) of the
    study stored in ``study_dir``; empty when there is none."""
    from sparseflow.store import DB_NAME, StudyStore

    if study_dir is None or not (Path(study_dir) / DB_NAME).is_file():
        return set(), {}
    with StudyStore(study_dir, readonly=True) as store:
        records = store.runs("finished")
    durations: dict[str, list[float]] = {}
    for rec in records:
        if rec.duration_s is not None and math.isfinite(rec.duration_s):
            durations.setdefault(shape_key(rec.config), []).append(float(rec.duration_s))
    return {r.run_key for r in records}, durations


@dataclass
class _Group:
    runs: list[Any]  # the unfinished PlannedRuns
    cfg: ExperimentConfig
    shape: str  # shape_key of its members
    key: tuple[str, int]  # (shape, runs): what one Throughput stands for


def _busy(cores: int) -> list[str]:
    """A note when other work shared the cores while the probe timed (the 1-minute load)."""
    try:
        load = os.getloadavg()[0]
    except (AttributeError, OSError):  # not available on this platform
        return []
    if load <= cores:
        return []
    return [f"the machine was busy while timing (load {load:.1f} on {cores} cores): the times "
            "hold while that load lasts"]


def _groups_left(plan: Plan, finished: set[str], vectorize: str,
                 max_group: int) -> list[_Group]:
    """The groups ``study run`` forms (over the whole plan), each with its unfinished runs."""
    groups: list[_Group] = []
    validated: dict[str, ExperimentConfig] = {}
    for g in group_runs(plan.runs, vectorize=vectorize, max_group=max_group):
        todo = [r for r in g.runs if r.run_key not in finished]
        if not todo:
            continue
        first = todo[0]
        if first.config_id not in validated:
            validated[first.config_id] = ExperimentConfig.model_validate(first.config)
        shape = shape_key(first.config)
        groups.append(_Group(todo, validated[first.config_id], shape, (shape, len(todo))))
    return groups


def _group_cost(g: _Group, sizes: Sizes, t: Throughput | None,
                durations: list[float] | None) -> float:
    """Seconds of one group: timed, or from the store's durations of its run shape (the
    training loop per run; the build and final evaluation around it when timed too)."""
    if durations:
        around = outside_seconds(g.cfg, sizes, t, len(g.runs)) if t else 0.0
        return sum(durations) / len(durations) * len(g.runs) + around
    assert t is not None
    return group_seconds(g.cfg, sizes, t, len(g.runs))


def _weights(cfg: ExperimentConfig, data: DataBundle | None, cache: dict[str, int]) -> int:
    """Prunable weights of cfg's model (meta device: shapes only), for ordering shapes."""
    key = cfg.model.model_dump_json() + str(cfg.regularization.dropout)
    if key not in cache and data is not None:
        with torch.device("meta"):
            model = MODELS.get(cfg.model.name)(cfg.model, data.input_shape, data.num_classes,
                                               cfg.regularization.dropout)
        cache[key] = sum(p.numel() for p in prunable_parameters(model).values())
    return cache.get(key, 1)


def _members_timed(k: int, weights: int) -> int:
    """Members a group of ``k`` is timed with: all, or two for big models (its pieces grow with
    the members; building and stepping all of them would take seconds each)."""
    return k if k <= 2 or k * weights <= BIG_GROUP else 2


def _levels(plan: Plan, g: _Group) -> dict[str, str]:
    run = g.runs[0]
    levels = {a: repr(run.cell.get(a)) for a in plan.axes()}
    levels["size"] = repr((run.kind, g.cfg.model.width, run.dense_width, len(g.runs)))
    return levels


def estimate_study(plan: Plan, *, jobs: int, vectorize: str = "auto", max_group: int = 8,
             study_dir: str | Path | None = None, startup_s: float | None = None,
             driver_s: float = 0.0, probe: Probe = measure,
             cores: int | None = None) -> Estimate:
    """Estimate ``study run`` of ``plan`` with ``jobs`` workers (see the module docstring).

    ``study_dir``: the study directory of a resumed study (its store's finished runs).
    ``startup_s``: a fresh process's start-up (interpreter and imports; default
    :data:`DEFAULT_STARTUP_S`); ``driver_s``: what the driver spends before it schedules the
    first group (its own start-up, expanding the spec). ``probe`` times one group's pieces
    (tests inject one); ``cores``: default all this process may use.
    """
    from sparseflow.studies.executor import default_jobs

    cores = cores or default_jobs()
    startup_s = DEFAULT_STARTUP_S if startup_s is None else startup_s
    finished, durations = stored_durations(study_dir)
    groups = _groups_left(plan, finished, vectorize, max_group)
    # one shape to time per (run shape, group size) that the store cannot time
    keyed: dict[tuple[str, int], _Group] = {}
    for g in groups:
        if g.shape not in durations:
            keyed.setdefault(g.key, g)
    sizes: dict[str, Sizes] = {}
    needed = {g.cfg.data.model_dump_json() for g in keyed.values()}  # data the probe trains on
    for g in groups:
        _sizes(g.cfg, sizes, keep=g.cfg.data.model_dump_json() in needed)
    t0 = time.perf_counter()
    throughput, timed, warmup_s = _time_shapes(plan, list(keyed.values()), sizes, probe,
                                               _scratch(study_dir))
    probe_s = time.perf_counter() - t0
    costs = [_group_cost(g, sizes[g.cfg.data.model_dump_json()], throughput.get(g.key),
                         durations.get(g.shape)) for g in groups]
    threads = max((g.cfg.train.threads for g in groups), default=1)
    load_s = sum(s.load_s for s in sizes.values())
    wall, workers = schedule(costs, jobs, startup_s + load_s + warmup_s, cores=cores,
                             threads=threads)
    if workers == 1:
        wall += load_s + warmup_s  # the driver loads the data and sets up once
    return Estimate(
        notes=_busy(cores) if timed else [],
        wall_s=driver_s + wall, compute_s=sum(costs), jobs=jobs, workers=workers,
        groups=len(groups),
        runs=sum(len(g.runs) for g in groups),
        skipped=sum(r.run_key in finished for r in plan.runs),
        shapes=len({g.key for g in groups}), timed=timed,
        from_store=sum(g.shape in durations for g in groups), probe_s=probe_s, load_s=load_s,
        warmup_s=warmup_s, threads=threads,
        vectorized=any(len(g.runs) > 1 for g in groups),
        early_stopping=any(g.cfg.train.early_stopping.enabled for g in groups))


def _scratch(study_dir: str | Path | None) -> Path | None:
    """Where the probe times its files: the study directory or its nearest existing parent
    (the file system the study will write), if writable; else the system's temporary folder."""
    if study_dir is None:
        return None
    for path in (Path(study_dir), *Path(study_dir).absolute().parents):
        if path.is_dir():
            return path if os.access(path, os.W_OK) else None
    return None


def _time_shapes(plan: Plan, groups: list[_Group], sizes: dict[str, Sizes],
                 probe: Probe, scratch: Path | None
                 ) -> tuple[dict[tuple[str, int], Throughput], int, float]:
    """(Throughput of every group shape: the design timed, the rest predicted; how many were
    timed; the one-time set-up the first build paid)."""
    if not groups:
        return {}, 0, 0.0
    weights: dict[str, int] = {}
    shapes = []
    for g in groups:
        sz = sizes[g.cfg.data.model_dump_json()]
        steps = g.cfg.train.epochs * steps_per_epoch(g.cfg, sz.n_train)
        w = _weights(g.cfg, sz.data, weights)
        shapes.append(Shape(_levels(plan, g), cost=len(g.runs) * steps * w,
                            work=_members_timed(len(g.runs), w) * w))
    # The process's one-time set-up first: a worker's start-up, not the first shape's cost.
    warmup_s = warm_up()
    t0 = time.perf_counter()

    def measure_one(i: int) -> Throughput:
        g = groups[i]
        sz = sizes[g.cfg.data.model_dump_json()]
        assert sz.data is not None
        k = len(g.runs)
        timed_k = _members_timed(k, _weights(g.cfg, sz.data, weights))
        cfgs = [ExperimentConfig.model_validate(r.config) for r in g.runs[:timed_k]]
        t = probe(cfgs, sz.data, scratch)
        return t if timed_k == k else t.for_members(k / timed_k)

    def total(i: int, t: Throughput) -> float:
        g = groups[i]
        return group_seconds(g.cfg, sizes[g.cfg.data.model_dump_json()], t, len(g.runs))

    def in_budget(extra: bool, expected_s: float) -> bool:
        end = time.perf_counter() - t0 + expected_s
        return end < (PROBE_BUDGET_S if extra else PROBE_LIMIT_S)

    factors = [*plan.axes()]
    measured = design(shapes, factors, "size", measure_one, total, in_budget)
    predicted = predict(shapes, [*factors, "size"], measured)
    return ({g.key: t for g, t in zip(groups, predicted, strict=True)}, len(measured),
            warmup_s)
