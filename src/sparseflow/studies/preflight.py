"""Checks a study run makes before it creates or writes anything.

A refused ``study run`` must leave the study directory as it found it (or absent): so every
refusal that can be decided up front — the data the plan needs, the Ray address, whether the
spec is compatible with the study already stored in the directory — is decided here, before
the directory, its lock or its store is created or written.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from sparseflow.config.schema import DataConfig
from sparseflow.errors import DataError
from sparseflow.plugins import load_plugins
from sparseflow.store import DB_NAME, StudyMismatchError, StudyStore
from sparseflow.studies.plan import Plan
from sparseflow.studies.spec import variant_overrides


def _locate(data: DataConfig) -> None:
    """DataError (one line, with the fix) when the files of ``data`` are not where its loader
    would look. Looks for the files only; datasets generated locally always pass."""
    from sparseflow.data import fashion_mnist
    from sparseflow.data.cifar import LAYOUTS, locate_cifar
    from sparseflow.data.search import locate_files

    if data.name == "fashion_mnist":
        locate_files("fashion_mnist", data.root, list(fashion_mnist.FILES.values()),
                     title="Fashion-MNIST", fix=fashion_mnist.FIX)
    elif data.name in LAYOUTS:
        locate_cifar(LAYOUTS[data.name], data.root)


def check_datasets(plan: Plan) -> None:
    """Every dataset the plan trains on is present (else DataError naming it and the fix)."""
    seen: set[tuple[str, str | None]] = set()
    for run in plan.runs:
        data = DataConfig.model_validate(run.config["data"])
        if (data.name, data.root) in seen:
            continue
        seen.add((data.name, data.root))
        try:
            _locate(data)
        except DataError as exc:
            raise DataError(f"study {plan.spec.name!r} needs dataset {data.name}, nothing was "
                            f"run: {exc}") from None


def check_executor(executor: str, address: str | None) -> None:
    """The ray executor: Ray is installed and the cluster address (given or RAY_ADDRESS)
    answers. Without an address a local cluster is started later, which cannot be refused."""
    if executor != "ray":
        return
    from sparseflow.studies.ray_backend import _import_ray, check_reachable

    _import_ray()
    target = address or os.environ.get("RAY_ADDRESS")
    if target:
        check_reachable(target)


def _meaning(overrides: dict[str, Any]) -> str:
    return json.dumps(overrides, sort_keys=True, default=repr)


def meanings(plan: Plan) -> dict[str, str]:
    """Variant name → its overrides as canonical JSON (what the store records)."""
    return {name: _meaning(over) for name, over in plan.spec.variant_meanings().items()}


def _stored_meanings(info: dict[str, Any], recorded: dict[str, Any]) -> dict[str, str]:
    """The meanings the stored study has used: every one recorded, and those of its latest
    spec (a store written before meanings were recorded has only the spec)."""
    old = info.get("spec") or {}
    out: dict[str, str] = {}
    for name in old.get("variants") or ["NR"]:
        try:
            out[name] = _meaning(variant_overrides(name, old.get("variant_defs") or {}))
        except ValueError:  # stored by a version with other built-ins: cannot compare
            continue
    return {**out, **{str(k): str(v) for k, v in recorded.items()}}


def check_compatible(plan: Plan, info: dict[str, Any] | None, study_dir: Path,
                     recorded: dict[str, Any] | None = None) -> None:
    """StudyMismatchError when the study stored in ``study_dir`` (its ``study_info`` and the
    variant meanings it ``recorded``) cannot take this plan: another base configuration or
    sparse side (the fingerprint), or a variant name that now means other overrides (its new
    runs would land in the old runs' cells)."""
    if info is None:
        return
    if info.get("fingerprint") != plan.fingerprint:
        raise StudyMismatchError(f"{study_dir} holds study {info.get('name')!r} with a "
                                 "different base configuration; use a new --dir")
    before = _stored_meanings(info, recorded or {})
    for name, now in meanings(plan).items():
        if name in before and before[name] != now:
            raise StudyMismatchError(
                f"variant {name!r} meant {before[name]} in the study stored in {study_dir} "
                f"and now means {now}; give the new definition another name, or use a new "
                "--dir")


def check_store(plan: Plan, study_dir: Path) -> None:
    """:func:`check_compatible` against the store already in ``study_dir``, if any; reads
    only, so a refusal leaves the directory (lock included) untouched."""
    if not (study_dir / DB_NAME).is_file():
        return
    with StudyStore(study_dir, readonly=True) as store:
        info, recorded = store.study_info(), store.variant_meanings()
    check_compatible(plan, info, study_dir, recorded)


def preflight(plan: Plan, study_dir: Path, *, executor: str, address: str | None,
              rebuild: bool = False, plugins: tuple[str, ...] = ()) -> None:
    """Every check that can refuse a study run before anything is created or written (with
    ``rebuild`` the stored study is not read: it is about to be moved aside and rebuilt, and
    the rebuilt one is checked under the lock). The ``plugins`` the workers will import are
    imported here first: one that cannot be is refused before any run starts."""
    load_plugins(plugins)
    check_datasets(plan)
    check_executor(executor, address)
    if not rebuild:
        check_store(plan, study_dir)
