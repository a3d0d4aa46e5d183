"""The study spec: one YAML file describing a whole SC-SDC study.

::

    name: quickstart
    base: {...}                  # an experiment config, as for `sparseflow train`
    axes:                        # dotted config key → values (full factorial)
      optim.name: [adam, sgd]
    variants: [NR, BN]           # regularization/normalization bundles (see VARIANTS)
    variant_defs: {L2: {regularization.l2: 0.001}}   # define or redefine bundles
    linked:                      # overrides that follow an axis value (not an axis)
      optim.name: {sgd: {optim.lr: 0.05}, adam: {optim.lr: 0.001}}
    # select: {axis: AXIS}      # optional: tune one of axes by validation (SelectSpec)
    scsdc:
      sparse_width: 256
      dense_widths: [32, 64, 128]    # or dense_fractions: [0.1, 0.3, 0.5]
    seeds: 3                     # or an explicit list [0, 1, 2]
    plugins: [mypkg.components]  # optional: modules registering components the spec names
    slurm: {partition: gpu, time_min: 120}   # optional: options of `--executor slurm`

Every (cell, dense width, seed) yields a sparse run (width ``sparse_width``, its mask matched
layer by layer to the dense twin) and a dense run (width = the dense width); both share the
seed, hence the data order.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationError, field_validator, model_validator

from sparseflow.config.base import FrozenConfig
from sparseflow.config.io import read_yaml, validation_message
from sparseflow.errors import ConfigError
from sparseflow.store.pairing import is_sparse_only_key
from sparseflow.store.selection import SELECT_METRICS

#: Built-in variants (the paper's names). Compose with "_": DA_L2_SC_BN = DA + L2 + SC + BN.
#: The paper does not give coefficients; these defaults are documented choices, and
#: ``variant_defs`` in a spec overrides them.
VARIANTS: dict[str, dict[str, Any]] = {
    "NR": {},
    "L2": {"regularization.l2": 5e-4},
    "WD": {"regularization.weight_decay": 1e-2},
    "DA": {"data.augment": True},
    "SC": {"model.skip": True},
    "BN": {"model.batchnorm": True},
    "DO": {"regularization.dropout": 0.1},
}


class ScsdcSpec(FrozenConfig):
    """Which same-capacity pairs to train."""

    sparse_width: int = Field(..., gt=0, description="Width W_S of every sparse network.")
    dense_widths: list[int] | None = Field(
        None, description="Dense widths W_D (each ≤ W_S)."
    )
    dense_fractions: list[float] | None = Field(
        None, description="Dense widths as fractions of W_S (the paper: 0.1 … 0.9)."
    )
    matching: Literal["per_layer", "total"] = Field("per_layer", description="See sparsity.")
    distribution: Literal["uniform", "er", "erk", "global"] = Field(
        "uniform", description="See sparsity (global: the masker chooses the layer-wise "
        "densities).")
    init: Literal["dense", "sparse_fanin", "layer_scaled", "standard"] = Field(
        "dense", description="Init policy of the sparse runs (the paper: dense)."
    )

    @field_validator("dense_widths", "dense_fractions")
    @classmethod
    def _widths_nonempty(cls, v: list[Any] | None) -> list[Any] | None:
        if v is not None and not v:
            raise ValueError("the list is empty; give at least one dense width or fraction")
        if v is not None and len(set(v)) != len(v):
            raise ValueError(f"repeats a value: {v}")
        return v

    @field_validator("dense_fractions")
    @classmethod
    def _fractions_in_range(cls, v: list[float] | None) -> list[float] | None:
        # A fraction is W_D / W_S: 0 (or less) is no network, above 1 a dense twin wider than
        # the sparse network, which SC-SDC cannot match.
        for f in v or []:
            if not (math.isfinite(f) and 0 < f <= 1):
                raise ValueError(f"each fraction must be in (0, 1], got {f}")
        return v

    @model_validator(mode="after")
    def _one_width_list(self) -> ScsdcSpec:
        if (self.dense_widths is None) == (self.dense_fractions is None):
            raise ValueError("give scsdc.dense_widths or scsdc.dense_fractions (exactly one)")
        for w in self.widths():
            if not 0 < w <= self.sparse_width:
                raise ValueError(f"dense width {w} must be in [1, sparse_width="
                                 f"{self.sparse_width}]")
        if len(set(self.widths())) != len(self.widths()):
            raise ValueError(f"scsdc.dense_fractions {self.dense_fractions} round to repeated "
                             f"dense widths {self.widths()}; drop the repeats")
        return self

    def widths(self) -> list[int]:
        """The dense widths, fractions resolved (rounded, at least 1), in the given order."""
        if self.dense_widths is not None:
            return list(self.dense_widths)
        return [max(1, round(f * self.sparse_width)) for f in self.dense_fractions or []]


class SlurmSpec(FrozenConfig):
    """How ``study run --executor slurm`` submits the study (a submitit job array). Where and
    how the runs are computed, never what they compute: no part of any run id or of the study
    fingerprint."""

    cluster: Literal["slurm", "local"] = Field(
        "slurm", description="slurm: sbatch job arrays; local: the same tasks as local "
        "subprocesses of this machine (submitit's local executor), to try a study out.")
    partition: str | None = Field(None, description="Slurm partition (default: the "
                                  "cluster's).")
    time_min: int = Field(60, gt=0, description="Time limit of one array task, minutes; a "
                          "task that reaches it checkpoints and is requeued.")
    cpus_per_task: int = Field(1, gt=0, description="CPUs of one array task (its torch "
                               "threads).")
    gpus_per_task: int = Field(0, ge=0, description="GPUs of one array task.")
    mem_gb: float | None = Field(None, gt=0, description="Memory of one array task, GB "
                                 "(default: the partition's).")
    array_parallelism: int = Field(256, gt=0, description="Array tasks running at once.")
    task_minutes: float = Field(
        30.0, gt=0, description="Training time one task aims at, minutes: runs are chunked "
        "by the durations measured on finished runs of the study, else by runs_per_task.")
    runs_per_task: int = Field(8, gt=0, description="Runs of one task when no duration has "
                               "been measured yet.")
    max_retries: int = Field(2, ge=0, description="Times the driver resubmits a task that "
                             "died (killed, node failure) before its runs count as failed.")
    sbatch: dict[str, str | int | float] = Field(
        default_factory=dict, description="Extra sbatch options, name → value (e.g. "
        "{account: proj42, qos: long}); passed as #SBATCH --name=value.")
    setup: list[str] = Field(default_factory=list, description="Shell lines run before each "
                             "task (module load ..., source venv/bin/activate).")


class SelectSpec(FrozenConfig):
    """``select:``: an axis tuned by validation rather than compared. Every value of the axis
    is trained; per kind (sparse, dense) and per group of runs that differ only in it, the run
    with the best validation metric is kept, and the tests compare only those (the rule:
    :mod:`sparseflow.store.selection`). Not part of any run's identity."""

    axis: str = Field(..., description="The swept key to tune, e.g. optim.lr (a key of axes).")
    metric: Literal["val_accuracy", "val_loss"] = Field(
        "val_accuracy", description="The final validation metric that chooses: val_accuracy "
        "(higher is better) or val_loss (lower is better).")


class StudySpec(FrozenConfig):
    """A whole study: base config × axes × variants × dense widths × seeds."""

    name: str = Field(..., description="Study name.")
    base: dict[str, Any] = Field(default_factory=dict, description="Base experiment config.")
    axes: dict[str, list[Any]] = Field(default_factory=dict,
                                       description="Dotted config key → values.")
    variants: list[str] = Field(default_factory=lambda: ["NR"],
                                description="Variant names (built-in or from variant_defs).")
    variant_defs: dict[str, dict[str, Any]] = Field(
        default_factory=dict, description="Variant name → dotted overrides.")
    linked: dict[str, dict[str | int | float | bool, dict[str, Any]]] = Field(
        default_factory=dict, description="Axis key → {axis value → dotted overrides that "
        "come with it}, e.g. a learning rate per optimizer: {optim.name: {sgd: {optim.lr: "
        "0.05}, adam: {optim.lr: 0.001}}}. The overrides follow the value: they are not an "
        "axis, so the cell is named by the axis value alone.")
    select: SelectSpec | None = Field(
        None, description="Tune one axis by validation (e.g. {axis: optim.lr}): per kind and "
        "group the best run is kept and only those are tested; None: every run is compared.")
    scsdc: ScsdcSpec
    seeds: int | list[int] = Field(3, description="Seed count (0 … n−1) or explicit seeds.")
    plugins: list[str] = Field(
        default_factory=list, description="Modules to import in the driver and every worker "
        "before building runs (they register the components the spec names); not part of "
        "any run's identity.")
    slurm: SlurmSpec = Field(
        default_factory=SlurmSpec, exclude=True, description="Options of `--executor slurm` "
        "(overridden by the --slurm-* flags); not part of the study's identity, nor stored.")

    @field_validator("plugins")
    @classmethod
    def _plugin_names(cls, v: list[str]) -> list[str]:
        from sparseflow.plugins import check_name

        return [check_name(m) for m in v]

    @field_validator("axes")
    @classmethod
    def _axes_nonempty(cls, v: dict[str, list[Any]]) -> dict[str, list[Any]]:
        for key, values in v.items():
            if not values:
                raise ValueError(f"axis {key!r} has no values")
            if len({repr(x) for x in values}) != len(values):
                raise ValueError(f"axis {key!r} repeats a value: {values}")
        return v

    @field_validator("seeds")
    @classmethod
    def _seeds_valid(cls, v: int | list[int]) -> int | list[int]:
        seeds = list(range(v)) if isinstance(v, int) else v
        if not seeds or len(set(seeds)) != len(seeds) or min(seeds) < 0:
            raise ValueError("seeds must be a positive count or a list of distinct seeds ≥ 0")
        return v

    @model_validator(mode="after")
    def _variants_distinct(self) -> StudySpec:
        # Two variants with the same overrides would put the same runs in two cells, which
        # no paired table can tell apart: refuse them here, naming both.
        seen: dict[str, str] = {}
        for name in self.variants:
            meaning = json.dumps(variant_overrides(name, self.variant_defs), sort_keys=True,
                                 default=repr)
            if name in seen.values():
                raise ValueError(f"variant {name!r} is listed twice in variants")
            if meaning in seen:
                raise ValueError(f"variants {seen[meaning]!r} and {name!r} both mean "
                                 f"{meaning}, so their cells would hold the same runs; "
                                 "drop one or change its variant_defs")
            seen[meaning] = name
        return self

    @model_validator(mode="after")
    def _links_valid(self) -> StudySpec:
        for key, by_value in self.linked.items():
            if key not in self.axes:
                raise ValueError(f"linked.{key}: {key!r} is not an axis; link overrides to a "
                                 f"key of axes ({', '.join(self.axes) or 'none'})")
            for value, overrides in by_value.items():
                if not any(_same_value(value, v) for v in self.axes[key]):
                    raise ValueError(f"linked.{key}.{value}: {value!r} is not a value of axis "
                                     f"{key!r} {self.axes[key]}")
                _check_link(key, value, overrides, self.axes)
        return self

    @model_validator(mode="after")
    def _select_valid(self) -> StudySpec:
        if self.select is not None:
            _check_select(self)
        return self

    def linked_overrides(self, cell: dict[str, Any]) -> dict[str, Any]:
        """The dotted overrides that the axis values of ``cell`` bring with them."""
        out: dict[str, Any] = {}
        for key, by_value in self.linked.items():
            for value, overrides in by_value.items():
                if _same_value(value, cell.get(key)):
                    out.update(overrides)
        return out

    def seed_list(self) -> list[int]:
        """The seeds as a list."""
        return list(range(self.seeds)) if isinstance(self.seeds, int) else list(self.seeds)

    def run_count(self) -> int:
        """Runs the full factorial names, counted from the sizes alone (nothing expanded):
        cells × dense widths × seeds sparse runs, and as many dense runs, save that the
        sparse-only axes (``sparsity.*``) do not multiply the dense twins. An upper bound of
        the plan's size (identical dense runs of two cells are planned once)."""
        cells = math.prod(len(v) for v in self.axes.values()) * len(self.variants)
        dense_cells = math.prod(len(v) for k, v in self.axes.items()
                                if not k.startswith("sparsity.")) * len(self.variants)
        return (cells + dense_cells) * len(self.scsdc.widths()) * len(self.seed_list())

    def variant_meanings(self) -> dict[str, dict[str, Any]]:
        """Variant name → its dotted overrides, for every variant of the study."""
        return {name: variant_overrides(name, self.variant_defs) for name in self.variants}


def _same_value(a: Any, b: Any) -> bool:
    """Whether a YAML mapping key and an axis value are the same value (``True`` is not 1)."""
    return type(a) is type(b) and a == b or (
        isinstance(a, int | float) and isinstance(b, int | float)
        and not isinstance(a, bool) and not isinstance(b, bool) and a == b)


def _check_link(key: str, value: Any, overrides: dict[str, Any],
                axes: dict[str, list[Any]]) -> None:
    """A link must not set an axis (the axis would then be overwritten in some cells), and one
    following a sparse-only axis sets only sparse-only keys (its dense twins are shared by every
    value of that axis, so they cannot take the value's overrides)."""
    where = f"linked.{key}.{value}"
    swept = sorted(set(overrides) & set(axes))
    if swept:
        raise ValueError(f"{where} sets {', '.join(swept)}, which is an axis; drop it from one "
                         "of them")
    if key.startswith("sparsity."):
        other = sorted(k for k in overrides if not k.startswith("sparsity."))
        if other:
            raise ValueError(f"{where} sets {', '.join(other)}, but {key} changes only the "
                             "sparse runs (their dense twins are shared); link sparsity.* keys "
                             "only, or make it a variant")


def _check_select(spec: StudySpec) -> None:
    """``select`` names an axis of the spec with at least two values that is no sparse-only key,
    and every run has a validation split to choose by."""
    assert spec.select is not None
    axis = spec.select.axis
    if axis not in spec.axes:
        from sparseflow.registry import closest

        hint = closest(axis, list(spec.axes))
        guess = f" (did you mean {hint!r}?)" if hint else ""
        raise ValueError(f"select.axis: {axis!r} is not an axis of the spec{guess}; axes: "
                         f"{', '.join(spec.axes) or 'none'}. select tunes one of them: add "
                         f"{axis} to axes with the values to choose from")
    if is_sparse_only_key(axis):
        raise ValueError(f"select.axis: {axis} defines the sparse method (it changes only the "
                         "sparse runs, whose dense twins are shared), not a tuning knob; select "
                         "a training axis such as optim.lr, or drop select")
    if len(spec.axes[axis]) < 2:
        raise ValueError(f"select.axis: {axis} has one value {spec.axes[axis]}, nothing to "
                         "choose from; give it at least two values, or drop select")
    assert spec.select.metric in SELECT_METRICS  # the Literal and the rule agree (tested)
    for where, value in _val_fractions(spec):
        if not value:
            raise ValueError(f"select: data.val_fraction is 0 in {where}, so those runs have "
                             f"no validation split to choose {axis} by (the test set is never "
                             "used to choose); set data.val_fraction > 0, or drop select")


def _val_fractions(spec: StudySpec) -> list[tuple[str, Any]]:
    """(where, value) of every ``data.val_fraction`` a run of the spec can get: the base
    config's (its default when unset), each axis value, variant and link that sets it."""
    from sparseflow.config.schema import DataConfig

    data = spec.base.get("data") if isinstance(spec.base.get("data"), dict) else {}
    out = [("base", data.get("val_fraction", DataConfig.model_fields["val_fraction"].default))]
    key = "data.val_fraction"
    out += [(f"axes.{key}", v) for v in spec.axes.get(key, [])]
    out += [(f"variant {name}", over[key]) for name, over in spec.variant_meanings().items()
            if key in over]
    out += [(f"linked.{axis}.{value}", over[key]) for axis, by in spec.linked.items()
            for value, over in by.items() if key in over]
    return out


def variant_overrides(name: str, defs: dict[str, dict[str, Any]] | None = None) -> dict[str, Any]:
    """Dotted overrides of variant ``name``: a defined name, or built-ins joined by '_'."""
    table = {**VARIANTS, **(defs or {})}
    if name in table:
        return dict(table[name])
    out: dict[str, Any] = {}
    for part in name.split("_"):
        if part not in table:
            from sparseflow.registry import unknown_name_message

            where = f" (in {name!r}; built-ins compose with '_')" if part != name else ""
            raise ValueError(unknown_name_message("variant", part, list(table)) + where)
        out.update(table[part])
    return out


def load_spec(path: str | Path) -> StudySpec:
    """Read and validate a study YAML; ConfigError with one line on any problem."""
    data = read_yaml(path)
    try:
        return StudySpec.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(f"{path}: {_message(exc)}") from None


def _message(exc: ValidationError) -> str:
    """One line for the first error. A check over the whole spec (or a whole section) names
    its problem itself: quoting its input would print the entire spec."""
    err = exc.errors()[0]
    if err["type"] == "value_error" and (not err["loc"] or err["loc"] == ("scsdc",)):
        key = ".".join(str(p) for p in err["loc"])
        return (f"{key}: " if key else "") + err["msg"].removeprefix("Value error, ")
    return validation_message(exc, StudySpec)
