"""From a :class:`StudySpec` to the full list of planned runs (the factorial expansion)."""

from __future__ import annotations

import hashlib
import itertools
import json
from dataclasses import dataclass
from typing import Any

from sparseflow.config import build_config, canonical, config_id, dump_config, run_name
from sparseflow.config.io import apply_override
from sparseflow.config.schema import ExperimentConfig
from sparseflow.errors import ConfigError
from sparseflow.store import PlannedRun
from sparseflow.studies.spec import StudySpec, variant_overrides


@dataclass(frozen=True)
class Plan:
    """Every run of a study, plus what identifies the study for the store."""

    spec: StudySpec
    runs: tuple[PlannedRun, ...]
    cells: tuple[dict[str, Any], ...]
    fingerprint: str

    def counts(self) -> dict[str, int]:
        """Cells, dense widths, seeds, pairs, runs by kind."""
        kinds = [r.kind for r in self.runs]
        return {"cells": len(self.cells), "dense_widths": len(self.spec.scsdc.widths()),
                "seeds": len(self.spec.seed_list()), "pairs": kinds.count("sparse"),
                "sparse_runs": kinds.count("sparse"), "dense_runs": kinds.count("dense"),
                "runs": len(self.runs)}

    def axes(self) -> list[str]:
        """The swept keys of a cell: the axes in spec order, then 'variant'."""
        return [*self.spec.axes, "variant"]


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
        if key.split(".")[0] in ("name", "seed") or key == "model.width":
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


def _planned(cfg: ExperimentConfig, cell: dict[str, Any], sparse_width: int,
             dense_width: int) -> PlannedRun:
    return PlannedRun(run_key=run_name(cfg), config_id=config_id(cfg), seed=cfg.seed,
                      kind=cfg.kind, sparse_width=sparse_width if cfg.kind == "sparse" else None,
                      dense_width=dense_width, cell=dict(cell), config=dump_config(cfg))


def expand(spec: StudySpec) -> Plan:
    """The full factorial: cells (axes × variants) × dense widths × seeds × {sparse, dense}.

    Order: cells in axis order (the last axis varies fastest), then variants, then widths, then
    seeds, sparse before dense. Runs with the same key (e.g. identical dense runs) appear once.
    """
    fp = fingerprint(spec)
    s = spec.scsdc
    runs: dict[str, PlannedRun] = {}
    cells = []
    for values in itertools.product(*spec.axes.values()):
        axis_over = dict(zip(spec.axes, values, strict=True))
        for variant in spec.variants:
            var_over = variant_overrides(variant, spec.variant_defs)
            clash = sorted(set(var_over) & set(axis_over))
            if clash:
                raise ConfigError(f"variant {variant!r} sets {', '.join(clash)}, which is also "
                                  "an axis; drop it from one of them")
            cell = {**axis_over, "variant": variant}
            cells.append(cell)
            data = _with({**spec.base, "name": spec.name}, {**var_over, **axis_over})
            for width in s.widths():
                for seed in spec.seed_list():
                    where = f"cell {cell}, dense width {width}, seed {seed}"
                    sparse = _config(_with(data, {
                        "model.width": s.sparse_width, "sparsity.dense_width": width,
                        "sparsity.matching": s.matching, "sparsity.distribution": s.distribution,
                        "sparsity.init": s.init}), seed, where)
                    dense = _config(_with(data, {"model.width": width}), seed, where)
                    for cfg in (sparse, dense):
                        run = _planned(cfg, cell, s.sparse_width, width)
                        runs.setdefault(run.run_key, run)
    return Plan(spec=spec, runs=tuple(runs.values()), cells=tuple(cells), fingerprint=fp)
