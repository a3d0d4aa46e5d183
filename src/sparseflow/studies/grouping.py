"""Grouping same-shape runs so they can be trained as one batched computation.

Runs of one group differ only in their seed (hence init, mask and data order) and their
learning rate; everything else — model family and widths, data, optimizer, regularization,
schedule, epochs, probe settings — is identical. Only families and settings the vectorized
engine supports are grouped; everything else runs alone. In particular a run whose mask changes
during training (a dynamic masker: set, rigl) trains alone: the batched engine holds one fixed
mask per member.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sparseflow.config.schema import ExperimentConfig
from sparseflow.store import PlannedRun
from sparseflow.train.vectorized import shape_key

#: Model families the vectorized engine implements.
VECTORIZABLE_FAMILIES = frozenset({"mlp"})


@dataclass(frozen=True)
class RunGroup:
    """Runs trained together (one run = a group of one)."""

    runs: tuple[PlannedRun, ...]

    @property
    def keys(self) -> list[str]:
        """The run keys of the members."""
        return [r.run_key for r in self.runs]


def vectorizable(cfg: ExperimentConfig) -> bool:
    """Whether the vectorized engine supports this config (never a dynamic-mask run)."""
    return (cfg.model.name in VECTORIZABLE_FAMILIES
            and not (cfg.gradflow.enabled and cfg.gradflow.probe_set == "batch")
            and not (cfg.sparsity.is_sparse and cfg.sparsity.dynamic)
            # batched bmm weights: no per-run CSR path
            and cfg.sparsity.effective_backend == "masked"
            and cfg.train.log == "none")  # the TensorBoard log is a hook of single runs


def group_runs(runs: Sequence[PlannedRun], *, vectorize: str = "auto",
               max_group: int = 8) -> list[RunGroup]:
    """Partition ``runs`` into groups of at most ``max_group`` same-shape runs.

    ``vectorize='off'`` gives one group per run. Groups keep the plan order of their first
    member, and members keep plan order.
    """
    if vectorize == "off" or max_group <= 1:
        return [RunGroup((r,)) for r in runs]
    buckets: dict[str, list[PlannedRun]] = {}
    singles: list[tuple[int, PlannedRun]] = []
    order: dict[str, int] = {}
    # Seeds of one config share its shape: validate and key each config once, not per seed.
    keys: dict[str, str | None] = {}
    for i, run in enumerate(runs):
        if run.config_id not in keys:
            ok = vectorizable(ExperimentConfig.model_validate(run.config))
            keys[run.config_id] = shape_key(run.config) if ok else None
        key = keys[run.config_id]
        if key is None:
            singles.append((i, run))
            continue
        order.setdefault(key, i)
        buckets.setdefault(key, []).append(run)
    groups: list[tuple[int, RunGroup]] = [(i, RunGroup((r,))) for i, r in singles]
    for key, members in buckets.items():
        for start in range(0, len(members), max_group):
            groups.append((order[key] + start, RunGroup(tuple(members[start:start + max_group]))))
    return [g for _, g in sorted(groups, key=lambda t: t[0])]
