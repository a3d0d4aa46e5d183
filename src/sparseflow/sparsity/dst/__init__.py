"""Dynamic sparse training: masks that change during training (SET, RigL).

- :mod:`~sparseflow.sparsity.dst.schedule`: when the mask changes and by how much (pure);
- :mod:`~sparseflow.sparsity.dst.update`: one layer's drop-and-grow, optimizer-state reset;
- :mod:`~sparseflow.sparsity.dst.maskers`: the registered dynamic maskers (grow scores);
- :mod:`~sparseflow.sparsity.dst.hook`: the training hook that applies them.
"""

from __future__ import annotations

from sparseflow.config.schema import SparsityConfig
from sparseflow.errors import ConfigError
from sparseflow.registry import MASKERS
from sparseflow.sparsity.dst import maskers as _maskers  # noqa: F401  (registers set, rigl)
from sparseflow.sparsity.dst.hook import DynamicSparsity, step_generator
from sparseflow.sparsity.dst.schedule import (
    applied_steps,
    drop_count,
    drop_fraction_at,
    end_step_of,
    is_update_step,
)
from sparseflow.sparsity.dst.update import drop_and_grow, restart_positions


def is_dynamic(masker: str) -> bool:
    """Whether ``masker`` changes the mask during training."""
    return MASKERS.meta(masker).get("kind") == "dynamic"


def initial_mask_config(cfg: SparsityConfig) -> SparsityConfig:
    """The sparsity config that draws the run's *initial* mask.

    A dynamic masker's initial mask is drawn by ``dst.init_masker`` with the counts a static
    run would get (SC-SDC: each layer its exact budget); a static config is returned as is.
    """
    if not cfg.is_sparse or not is_dynamic(cfg.masker):
        return cfg
    init = cfg.dst.init_masker
    if is_dynamic(init):
        static = [n for n in MASKERS.names() if not is_dynamic(n)]
        raise ConfigError(f"sparsity.dst.init_masker {init!r} is dynamic; the initial mask "
                          f"needs a static masker: {', '.join(static)}")
    return cfg.model_copy(update={"masker": init})


__all__ = [
    "DynamicSparsity",
    "applied_steps",
    "drop_and_grow",
    "drop_count",
    "drop_fraction_at",
    "end_step_of",
    "initial_mask_config",
    "is_dynamic",
    "is_update_step",
    "restart_positions",
    "step_generator",
]
