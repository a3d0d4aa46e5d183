"""One SC-SDC pair built exactly as a sparse run builds it, for inspection (`sparseflow pair`)."""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from sparseflow.config.schema import ExperimentConfig
from sparseflow.data import load_data
from sparseflow.errors import ConfigError
from sparseflow.models import build_model, init_std
from sparseflow.sparsity import Mask
from sparseflow.train.build import (
    build_mask,
    dense_twin,
    draw_initial_weights,
    resolve_device,
    scale_active_weights,
    twin_fans,
)
from sparseflow.train.seeding import make_generators


@dataclass
class BuiltPair:
    """The sparse model (masked, initialized), its dense twin's architecture, the counts, and
    the init std of each layer's active weights (sparse) and weights (dense).

    ``counts`` are the mask's active weights per layer: the profile the masker chose (with
    ``distribution: global`` a score masker sets the layer-wise densities itself)."""

    sparse: nn.Module
    dense: nn.Module
    mask: Mask
    counts: dict[str, int]
    sparse_stds: dict[str, float]
    dense_stds: dict[str, float]


def build_pair(cfg: ExperimentConfig) -> BuiltPair:
    """Build the sparse side of ``cfg`` (which must set ``sparsity.dense_width``) exactly as a
    run builds it: draw the weights, choose the mask (scoring on the run's device), scale."""
    if cfg.sparsity.dense_width is None:
        raise ConfigError("set sparsity.dense_width (the dense twin's width)")
    device = resolve_device(cfg.train.device)
    data = load_data(cfg.data).to(device)
    gens = make_generators(cfg.seed)
    model = build_model(cfg.model, data.input_shape, data.num_classes,
                        dropout=cfg.regularization.dropout, generator=gens["init"])
    twin = dense_twin(cfg, data.input_shape, data.num_classes)
    draw_initial_weights(cfg, model, twin, gens["init"])
    mask = build_mask(cfg.sparsity, model, gens["mask"], twin, data=data,
                      batch_size=cfg.train.batch_size)
    assert mask is not None  # dense_width set ⇒ sparse
    stds = scale_active_weights(cfg, model, mask, twin)
    dense_fans = twin_fans(twin)
    assert dense_fans is not None
    dense_stds = {n: init_std(cfg.model.init, *f) for n, f in dense_fans.items()}
    counts = {n: mask.active(n) for n in mask}
    return BuiltPair(model, twin, mask, counts, stds, dense_stds)
