"""Names become objects here: from an :class:`ExperimentConfig` to model, mask, optimizer
and hooks. Everything below this module takes objects, not configs."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from sparseflow.config.schema import ExperimentConfig, SparsityConfig
from sparseflow.data import DataBundle, load_data
from sparseflow.models import build_model, fans, set_dropout_generator
from sparseflow.optim import CoupledL2, DecoupledWeightDecay, build_optimizer, decay_targets
from sparseflow.registry import MODELS
from sparseflow.scsdc import apply_init_policy, same_capacity_counts
from sparseflow.sparsity import Mask, MaskEnforcer, draw_mask, layer_counts, prunable_parameters
from sparseflow.sparsity.dst import initial_mask_config
from sparseflow.train.callbacks import EarlyStopping, LRSchedule
from sparseflow.train.divergence import StopOnDivergence
from sparseflow.train.dst import build_dst_hook
from sparseflow.train.probe import GradFlowProbe
from sparseflow.train.seeding import make_generators
from sparseflow.train.state import TrainState


def resolve_device(name: str) -> torch.device:
    """'auto' → cuda when available, else cpu; 'cuda' without a GPU is a clear error."""
    from sparseflow.errors import ConfigError

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("train.device is 'cuda' but no CUDA device is available; use cpu or auto")
    return torch.device(name)


def dense_twin(cfg: ExperimentConfig, input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    """The same-capacity dense twin's architecture (width ``sparsity.dense_width``) on the meta
    device: shapes and fans only, no memory and no random draws."""
    twin_cfg = cfg.model.model_copy(update={"width": cfg.sparsity.dense_width})
    with torch.device("meta"):
        return MODELS.get(twin_cfg.name)(twin_cfg, tuple(input_shape), num_classes,
                                         cfg.regularization.dropout)


def build_mask(cfg: SparsityConfig, model: nn.Module, generator: torch.Generator,
               twin: nn.Module | None = None) -> Mask | None:
    """Draw the run's mask (None for a dense run) with exact per-layer counts.

    With ``cfg.dense_width`` the counts come from the dense ``twin`` (SC-SDC matching);
    otherwise from the density / per-layer settings. Magnitude maskers rank the model's
    weights as initialized.
    """
    if not cfg.is_sparse:
        return None
    params = {n: p.detach() for n, p in prunable_parameters(model).items()}
    if cfg.dense_width is not None:
        if twin is None:
            raise ValueError("sparsity.dense_width needs the dense twin to count its weights")
        counts = same_capacity_counts(model, twin, cfg.matching, cfg.distribution)
    else:
        counts = layer_counts(params, cfg.density, cfg.layer_densities, cfg.layer_counts)
    return draw_mask(cfg.masker, params, counts, generator)


def init_active_weights(cfg: ExperimentConfig, model: nn.Module, mask: Mask,
                        twin: nn.Module | None, generator: torch.Generator) -> None:
    """Re-draw the active weights by the init policy in force (no-op for 'standard')."""
    policy = cfg.sparsity.init_policy
    if policy == "standard":
        return
    dense_fans = None
    if twin is not None:
        dense_fans = {n: fans(p) for n, p in prunable_parameters(twin).items()}
    apply_init_policy(policy, model, mask, init=cfg.model.init, generator=generator,
                      dense_fans=dense_fans)


def build_probe(cfg: ExperimentConfig, data: DataBundle, mask: Mask | None,
                generator: torch.Generator) -> GradFlowProbe:
    """The gradient-flow probe with its probe set (drawn once per run from the train split)."""
    gf = cfg.gradflow
    x = y = None
    chunk = None
    if gf.probe_set == "fixed":
        n = len(data.train)
        idx = torch.randperm(n, generator=generator)[: min(gf.probe_size, n)]
        idx = idx.to(data.train.x.device)
        x, y = data.train.x[idx], data.train.y[idx]
    elif gf.probe_set == "full":
        x, y, chunk = data.train.x, data.train.y, cfg.train.eval_batch_size
    return GradFlowProbe(gf, mask, cfg.train.epochs, x, y, chunk,
                         adaptive=cfg.train.early_stopping.enabled)


@dataclass
class Built:
    """The objects of one run, ready for :func:`sparseflow.train.loop.fit`."""

    data: DataBundle
    state: TrainState
    hooks: list[Any]
    mask: Mask | None
    enforcer: MaskEnforcer | None
    early: EarlyStopping | None
    device: torch.device
    cfg: ExperimentConfig | None = None
    meta: dict[str, Any] = field(default_factory=dict)


def build_run(cfg: ExperimentConfig, data: DataBundle | None = None) -> Built:
    """Build data, generators, model, mask, optimizer and the standard hooks of a run.

    Hook order matters: the mask enforcer runs first after backward (probes may read the raw
    gradient it stashes; the optimizer sees only masked gradients), then dynamic sparsity (a
    mask update), then coupled L2, then decoupled weight decay; after the step the enforcer
    re-masks the weights.
    """
    device = resolve_device(cfg.train.device)
    if data is None:
        data = load_data(cfg.data)
    data = data.to(device)
    gens = make_generators(cfg.seed)
    model = build_model(cfg.model, data.input_shape, data.num_classes,
                        dropout=cfg.regularization.dropout, generator=gens["init"])
    set_dropout_generator(model, gens["dropout"])
    twin = None
    if cfg.sparsity.dense_width is not None:
        twin = dense_twin(cfg, data.input_shape, data.num_classes)
    mask = build_mask(initial_mask_config(cfg.sparsity), model, gens["mask"], twin)
    if mask is not None:
        # Continues the init stream after the model's own init: same seed, same weights.
        init_active_weights(cfg, model, mask, twin, gens["init"])
    model.to(device)
    optimizer = build_optimizer(model.parameters(), cfg.optim)
    n = len(data.train)
    bs = cfg.train.batch_size
    steps = max(n // bs if cfg.train.drop_last else -(-n // bs), 1)
    hooks: list[Any] = [LRSchedule(cfg.optim.lr, cfg.optim.schedule)]
    probe = None
    if cfg.gradflow.enabled:
        # First in the list: in batch mode it reads the raw gradient before masking.
        probe = build_probe(cfg, data, mask, gens["probe"])
        hooks.insert(0, probe)
    enforcer = dst = None
    if mask is not None:
        enforcer = MaskEnforcer(model, mask)
        enforcer.apply_to_weights()
        hooks.append(enforcer)
        if cfg.sparsity.dynamic:
            # Right after the enforcer (it reads the raw gradient the enforcer keeps), before
            # L2 and decay (a skipped step applies neither).
            dst = build_dst_hook(cfg, enforcer, optimizer, model, cfg.train.epochs * steps, probe)
            hooks.append(dst)
    reg = cfg.regularization
    targets = decay_targets(model, reg.l2_on_all)
    if reg.l2 > 0:
        hooks.append(CoupledL2(targets, reg.l2))
    if reg.weight_decay > 0:
        hooks.append(DecoupledWeightDecay(targets, reg.weight_decay, optimizer))
    early = EarlyStopping(cfg.train.early_stopping) if cfg.train.early_stopping.enabled else None
    if early is not None:
        hooks.append(early)
        if dst is not None and early.cfg.restore_best:
            hooks.append(dst.keep_best(early))  # the best epoch's mask, for mask_final.pt
    hooks.append(StopOnDivergence())  # after early stopping: its stop reason wins
    state = TrainState(model=model, optimizer=optimizer, generators=gens,
                       epochs=cfg.train.epochs, steps_per_epoch=steps)
    return Built(data=data, state=state, hooks=hooks, mask=mask, enforcer=enforcer,
                 early=early, device=device, cfg=cfg)
