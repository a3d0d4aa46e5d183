"""From a :class:`StudySpec` to the full list of planned runs (the factorial expansion)."""

from __future__ import annotations

import hashlib
import itertools
import json
import math
from dataclasses import dataclass
from typing import Any

from sparseflow.config import build_config, canonical, config_id, dump_config
from sparseflow.config.io import apply_override
from sparseflow.config.schema import ExperimentConfig
from sparseflow.errors import ConfigError
from sparseflow.store import PlannedRun
from sparseflow.store.pairing import is_sparse_only_key
from sparseflow.studies.spec import StudySpec


@dataclass(frozen=True)
class Plan:
    """Every run of a study, plus what identifies the study for the store."""

    spec: StudySpec
    runs: tuple[PlannedRun, ...]
    cells: tuple[dict[str, Any], ...]
    fingerprint: str

    def counts(self) -> dict[str, int]:
        """Cells, dense widths, seeds, pairs, runs by kind; with sparse-only axes also the
        dense runs shared (each the twin of more than one sparse run); with ``select`` the
        pairs the tests will compare (one per group of runs differing only in its axis)."""
        kinds = [r.kind for r in self.runs]
        out = {"cells": len(self.cells), "dense_widths": len(self.spec.scsdc.widths()),
               "seeds": len(self.spec.seed_list()), "pairs": kinds.count("sparse"),
               "sparse_runs": kinds.count("sparse"), "dense_runs": kinds.count("dense"),
               "runs": len(self.runs)}
        if self.sparse_only_axes():
            out["shared_dense_runs"] = self.shared_dense_runs()
        if self.spec.select is not None:  # one chosen run per group of the select axis
            out["selected_pairs"] = out["pairs"] // len(self.spec.axes[self.spec.select.axis])
        return out

    def axes(self) -> list[str]:
        """The swept keys of a cell: the axes in spec order, then 'variant'."""
        return [*self.spec.axes, "variant"]

    def sparse_only_axes(self) -> list[str]:
        """The swept keys that change only the sparse runs (``sparsity.*``), in spec order: no
        dense run carries them, so one dense twin serves every value of them."""
        return sparse_only(self.spec)

    def shared_dense_runs(self) -> int:
        """Dense runs that are the twin of more than one sparse run (one per sparse-only-axis
        combination of their cell)."""
        per = math.prod(len(self.spec.axes[a]) for a in self.sparse_only_axes())
        return sum(r.kind == "dense" for r in self.runs) if per > 1 else 0


def sparse_only(spec: StudySpec) -> list[str]:
    """The spec's sparse-only axes (keys starting with ``sparsity.``), in spec order."""
    return [k for k in spec.axes if is_sparse_only_key(k)]


def _with(data: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    for key, value in overrides.items():
        data = apply_override(data, key, value)
    return data


def _config(data: dict[str, Any], seed: int, where: str) -> ExperimentConfig:
    try:
        return build_config(data, seed=seed)
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc}") from None


def _check_base(spec: StudySpec) -> ExperimentConfig:
    base = _config(spec.base, 0, "base")
    if base.sparsity.is_sparse:
        raise ConfigError("base: leave sparsity density/counts/dense_width unset; the study "
                          "derives each sparse run's mask from its dense twin (scsdc)")
    for key in spec.axes:
        if key.split(".")[0] in ("name", "seed") or key in ("model.width",
                                                             "sparsity.dense_width"):
            raise ConfigError(f"axis {key!r} cannot be swept here: widths come from scsdc, "
                              "seeds from seeds")
    return base


def fingerprint(spec: StudySpec) -> str:
    """What must not change between invocations on one study directory: the base config and
    the sparse side of SC-SDC. Axes, variants, dense widths and seeds may grow."""
    base = _check_base(spec)
    s = spec.scsdc
    payload = {"base": canonical(base), "sparse_width": s.sparse_width, "matching": s.matching,
               "distribution": s.distribution, "init": s.init}
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


#: Largest plan :func:`expand` builds unless told otherwise. The biggest preset (the paper's
#: full BN grid) names 36,000 runs and expands in seconds; a 10^6-run spec is almost always a
#: typo in an axis, and would take minutes to expand and hours of store writes before the
#: first run trains. Raise it with ``max_runs`` (``--max-runs`` on the CLI).
DEFAULT_MAX_RUNS = 100_000


def check_size(spec: StudySpec, max_runs: int = DEFAULT_MAX_RUNS) -> int:
    """The spec's run count (from the axis sizes, nothing expanded); ConfigError above
    ``max_runs``, with the count, where it comes from and how to allow it."""
    n = spec.run_count()
    if n > max_runs:
        sizes = " × ".join([*(f"{len(v)} {k}" for k, v in spec.axes.items()),
                            f"{len(spec.variants)} variants",
                            f"{len(spec.scsdc.widths())} dense widths",
                            f"{len(spec.seed_list())} seeds",
                            "2 kinds" + (" (dense twins shared across "
                                         f"{', '.join(sparse_only(spec))})"
                                         if sparse_only(spec) else "")])
        raise ConfigError(f"study {spec.name!r} names {n:,} runs ({sizes}), more than the limit "
                          f"of {max_runs:,}; shrink an axis or pass --max-runs {n}")
    return n


def _pair(data: dict[str, Any], dense_data: dict[str, Any], spec: StudySpec, width: int,
          where: str) -> tuple[ExperimentConfig, ExperimentConfig]:
    """The (sparse, dense) configs of one cell and dense width, at seed 0. ``dense_data`` is
    the cell's config without its sparse-only overrides."""
    s = spec.scsdc
    # An axis on one of scsdc's sparse-side keys (sparsity.init, .distribution, .matching)
    # sweeps it: its value wins over the scsdc default (which would otherwise overwrite it).
    side = {"sparsity.matching": s.matching, "sparsity.distribution": s.distribution,
            "sparsity.init": s.init}
    sparse = _config(_with(data, {
        "model.width": s.sparse_width, "sparsity.dense_width": width,
        **{k: v for k, v in side.items() if k not in spec.axes}}), 0, where)
    dense = _config(_with(dense_data, {"model.width": width}), 0, where)
    return sparse, dense


def _seeded(cfg: ExperimentConfig, cid: str, cell: dict[str, Any], spec: StudySpec,
            dense_width: int, seeds: list[int]) -> list[PlannedRun]:
    """One PlannedRun per seed of ``cfg`` (whose config id is ``cid``). The seed is no part of
    the id and changes nothing else in the config, so the config is validated and hashed once,
    not once per seed."""
    dumped = dump_config(cfg)
    sparse_width = spec.scsdc.sparse_width if cfg.kind == "sparse" else None
    return [PlannedRun(run_key=f"{cid}-s{seed}", config_id=cid, seed=seed, kind=cfg.kind,
                       sparse_width=sparse_width, dense_width=dense_width, cell=dict(cell),
                       config={**dumped, "seed": seed}) for seed in seeds]


def _check_variants(spec: StudySpec) -> None:
    """Refuse a variant that sets a sparse-only key: its dense runs would be another variant's
    (a dense run ignores the sparsity section), so the key belongs on an axis."""
    for variant, overrides in spec.variant_meanings().items():
        keys = sorted(k for k in overrides if is_sparse_only_key(k))
        if keys:
            raise ConfigError(f"variant {variant!r} sets {', '.join(keys)}, which changes only "
                              "the sparse runs (its dense runs would be another variant's); "
                              f"sweep it as an axis instead: axes: {{{keys[0]}: [...]}}")


def _cells(spec: StudySpec) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """(cell, its overrides) in plan order: axes (last fastest), then variants."""
    out = []
    meanings = spec.variant_meanings()
    _check_variants(spec)
    for values in itertools.product(*spec.axes.values()):
        axis_over = dict(zip(spec.axes, values, strict=True))
        for variant in spec.variants:
            var_over = meanings[variant]
            clash = sorted(set(var_over) & set(axis_over))
            if clash:
                raise ConfigError(f"variant {variant!r} sets {', '.join(clash)}, which is also "
                                  "an axis; drop it from one of them")
            links = spec.linked_overrides(axis_over)
            clash = sorted(set(var_over) & set(links))
            if clash:
                raise ConfigError(f"variant {variant!r} sets {', '.join(clash)}, which "
                                  "linked also sets; drop it from one of them")
            out.append(({**axis_over, "variant": variant},
                        {**var_over, **links, **axis_over}))
    return out


def _dense_side(cell: dict[str, Any], overrides: dict[str, Any], sparse_keys: list[str]
                ) -> tuple[dict[str, Any], dict[str, Any]]:
    """A cell's dense twin: its cell without the sparse-only axes, its overrides without any
    sparse-only key (the axes' and those linked to them)."""
    return ({k: v for k, v in cell.items() if k not in sparse_keys},
            {k: v for k, v in overrides.items()
             if k not in sparse_keys and not is_sparse_only_key(k)})


def expand(spec: StudySpec, *, max_runs: int = DEFAULT_MAX_RUNS) -> Plan:
    """The full factorial: cells (axes × variants) × dense widths × seeds × {sparse, dense}.

    Order: cells in axis order (the last axis varies fastest), then variants, then widths, then
    seeds, sparse before dense. Runs with the same key (e.g. identical dense runs) appear once.
    Sparse-only axes (``sparsity.*``) reach only the sparse runs: a dense run's config and cell
    leave them out, so one dense twin per (other axes, variant, dense width, seed) is planned
    and shared by every value of them. A base config's own sparsity section stays in every
    run's config (dense ids as before; a dense run trains no mask).
    Refuses (ConfigError) a spec naming more than ``max_runs`` runs before expanding anything,
    and two cells whose sparse runs are the same runs (the table could not tell them apart).
    """
    check_size(spec, max_runs)
    if spec.plugins:  # the components the spec names must be registered before it validates
        from sparseflow.plugins import load_plugins

        load_plugins(spec.plugins)
    fp = fingerprint(spec)
    seeds = spec.seed_list()
    runs: dict[str, PlannedRun] = {}
    owner: dict[str, dict[str, Any]] = {}  # sparse config id -> the cell that planned it
    cells = []
    sparse_keys = sparse_only(spec)
    for cell, overrides in _cells(spec):
        cells.append(cell)
        base = {**spec.base, "name": spec.name}
        data = _with(base, overrides)
        dense_cell, dense_over = _dense_side(cell, overrides, sparse_keys)
        dense_data = _with(base, dense_over) if sparse_keys else data
        for width in spec.scsdc.widths():
            sparse, dense = _pair(data, dense_data, spec, width,
                                  f"cell {cell}, dense width {width}")
            cid = config_id(sparse)
            if owner.setdefault(cid, cell) is not cell:
                raise ConfigError(f"cells {_label(owner[cid])} and {_label(cell)} train the "
                                  "same runs (their overrides give one config); make the "
                                  "variants or axis values differ")
            pairs = zip(_seeded(sparse, cid, cell, spec, width, seeds),
                        _seeded(dense, config_id(dense), dense_cell, spec, width, seeds),
                        strict=True)
            for pair in pairs:
                for run in pair:
                    runs.setdefault(run.run_key, run)
    return Plan(spec=spec, runs=tuple(runs.values()), cells=tuple(cells), fingerprint=fp)


def _label(cell: dict[str, Any]) -> str:
    return "{" + ", ".join(f"{k}={v}" for k, v in cell.items()) + "}"
