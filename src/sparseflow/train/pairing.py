"""One SC-SDC pair built exactly as a sparse run builds it, for inspection (`sparseflow pair`)."""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from sparseflow.config.schema import ExperimentConfig
from sparseflow.data import load_data
from sparseflow.errors import ConfigError
from sparseflow.models import build_model, fans, init_std
from sparseflow.prunable import prunable_parameters
from sparseflow.scsdc import apply_init_policy, same_capacity_counts
from sparseflow.sparsity import Mask
from sparseflow.train.build import build_mask, dense_twin
from sparseflow.train.seeding import make_generators


@dataclass
class BuiltPair:
    """The sparse model (masked, initialized), its dense twin's architecture, the counts, and
    the init std of each layer's active weights (sparse) and weights (dense)."""

    sparse: nn.Module
    dense: nn.Module
    mask: Mask
    counts: dict[str, int]
    sparse_stds: dict[str, float]
    dense_stds: dict[str, float]


def build_pair(cfg: ExperimentConfig) -> BuiltPair:
    """Build the sparse side of ``cfg`` (which must set ``sparsity.dense_width``)."""
    if cfg.sparsity.dense_width is None:
        raise ConfigError("set sparsity.dense_width (the dense twin's width)")
    data = load_data(cfg.data)
    gens = make_generators(cfg.seed)
    model = build_model(cfg.model, data.input_shape, data.num_classes,
                        dropout=cfg.regularization.dropout, generator=gens["init"])
    twin = dense_twin(cfg, data.input_shape, data.num_classes)
    counts = same_capacity_counts(model, twin, cfg.sparsity.matching, cfg.sparsity.distribution)
    mask = build_mask(cfg.sparsity, model, gens["mask"], twin)
    assert mask is not None  # dense_width set ⇒ sparse
    dense_fans = {n: fans(p) for n, p in prunable_parameters(twin).items()}
    stds = apply_init_policy(cfg.sparsity.init_policy, model, mask, init=cfg.model.init,
                             generator=gens["init"], dense_fans=dense_fans)
    dense_stds = {n: init_std(cfg.model.init, *f) for n, f in dense_fans.items()}
    return BuiltPair(model, twin, mask, counts, stds, dense_stds)
