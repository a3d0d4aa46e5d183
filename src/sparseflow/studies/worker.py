"""What a worker process does: train one planned run and hand its results to the driver.

Workers never touch the study store (the driver is its single writer); they write only their
own run directory, whose atomic files make a killed worker harmless: the run resumes from its
last checkpoint next time.
"""

from __future__ import annotations

import os
import signal
import sys
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sparseflow.utils.atomic import read_json

#: Loaded datasets of this worker process, by data config (runs of a study share datasets).
_DATA_CACHE: dict[str, Any] = {}


@dataclass
class Outcome:
    """A finished or failed run, as the driver records it."""

    run_key: str
    ok: bool
    summary: dict[str, Any] = field(default_factory=dict)
    metrics: list[dict[str, Any]] = field(default_factory=list)
    gradflow: list[dict[str, Any]] = field(default_factory=list)
    error: str = ""


def init_worker(threads: int, plugins: tuple[str, ...] = ()) -> None:
    """Pool initializer: bound intra-op threads, die with the driver (Linux), leave Ctrl-C to
    the driver, fill registries (the built-ins, then the driver's ``plugins`` and the installed
    entry-point plugins)."""
    import torch

    torch.set_num_threads(max(1, threads))
    # A terminal's Ctrl-C reaches the whole process group: the driver alone handles it (it
    # stops the workers and marks their runs interrupted); a worker that raised
    # KeyboardInterrupt would instead hand back a traceback as if its run had failed.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if sys.platform.startswith("linux"):
        # A worker must not outlive a killed driver: a new driver could then start the same
        # run directory while the orphan still writes it.
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        pr_set_pdeathsig = 1
        libc.prctl(pr_set_pdeathsig, signal.SIGKILL)
        if os.getppid() == 1:  # the driver died before prctl took effect
            os._exit(1)
    import sparseflow  # noqa: F401
    from sparseflow.plugins import load_plugins

    # A spawned worker starts clean: the components the driver's plugins registered exist
    # here only once their modules are imported again.
    load_plugins(plugins)


def _data(cfg: Any) -> Any:
    from sparseflow.data import load_data

    key = cfg.data.model_dump_json()
    if key not in _DATA_CACHE:
        _DATA_CACHE.clear()  # one dataset at a time bounds a worker's memory
        _DATA_CACHE[key] = load_data(cfg.data)
    return _DATA_CACHE[key]


def _read_json(path: Path) -> Any:
    return read_json(path) if path.is_file() else []


def _outcome(run_key: str, result: Any) -> Outcome:
    return Outcome(run_key, True, result.summary, _read_json(result.run_dir / "metrics.json"),
                   _read_json(result.run_dir / "gradflow.json"))


def execute_group(items: list[tuple[str, dict[str, Any]]], runs_dir: str) -> list[Outcome]:
    """Train a group of same-shape runs as one batched computation (a group of one: alone).

    If the batched computation fails, the members are run one by one, so that every failure
    is recorded against the run that causes it. A fresh group (no checkpoint, no finished
    member) whose batched step does not measure faster than its members' separate steps
    (:func:`~sparseflow.studies.timing.group_pays`, measured once per group shape and study:
    :mod:`~sparseflow.studies.batching`) is run one by one too: same results, to float
    rounding, in less time.
    """
    if len(items) == 1:
        return [execute(items[0][0], items[0][1], runs_dir)]
    from sparseflow.config.schema import ExperimentConfig
    from sparseflow.train.vectorized import run_group

    try:
        cfgs = [ExperimentConfig.model_validate(config) for _, config in items]
        if not _batch_it(cfgs, runs_dir):
            return [execute(key, config, runs_dir) for key, config in items]
        results = run_group(cfgs, runs_dir, data=_data(cfgs[0]))
        return [_outcome(key, res) for (key, _), res in zip(items, results, strict=True)]
    except Exception:  # noqa: BLE001 - fall back to separate runs, which record the error
        return [execute(key, config, runs_dir) for key, config in items]


def _batch_it(cfgs: list[Any], runs_dir: str) -> bool:
    """Whether to train ``cfgs`` as one batched group: always when it resumes (a group
    checkpoint, or some members finished by the group), else as the study decided for this
    group shape (:mod:`~sparseflow.studies.batching`: once, by measuring, or ``--vectorize
    on``)."""
    from sparseflow.studies import batching, timing
    from sparseflow.train.run import is_finished, run_dir_for
    from sparseflow.train.vectorized import group_checkpoint

    if group_checkpoint(runs_dir, cfgs).is_file() or any(
            is_finished(run_dir_for(c, runs_dir)) for c in cfgs):
        return True
    return batching.decide(runs_dir, cfgs,
                           lambda: timing.group_pays(cfgs, _data(cfgs[0])).batched)


def execute(run_key: str, config: dict[str, Any], runs_dir: str) -> Outcome:
    """Train (or resume, or just read back) one run; never raises for a failing run."""
    from sparseflow.config.schema import ExperimentConfig
    from sparseflow.train.run import run_experiment

    try:
        cfg = ExperimentConfig.model_validate(config)
        return _outcome(run_key, run_experiment(cfg, runs_dir, data=_data(cfg)))
    except Exception as exc:  # a failing run is recorded, and the study goes on
        last = traceback.extract_tb(exc.__traceback__)[-1] if exc.__traceback__ else None
        where = f" (at {Path(last.filename).name}:{last.lineno})" if last else ""
        message = " ".join(str(exc).split()) or type(exc).__name__
        return Outcome(run_key, False, error=f"{type(exc).__name__}: {message}{where}")
