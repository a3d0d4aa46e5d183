"""Names become objects here: from an :class:`ExperimentConfig` to model, mask, optimizer
and hooks. Everything below this module takes objects, not configs."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from sparseflow.config.schema import ExperimentConfig, SparsityConfig
from sparseflow.data import DataBundle, load_data
from sparseflow.errors import ConfigError
from sparseflow.models import build_model, fans, set_dropout_generator
from sparseflow.optim import CoupledL2, DecoupledWeightDecay, build_optimizer, decay_targets
from sparseflow.registry import MASKERS, MODELS
from sparseflow.scsdc import (
    draw_init_policy,
    plan_budget,
    same_capacity_counts,
    scale_init_policy,
)
from sparseflow.sparsity import (
    Budget,
    Mask,
    MaskEnforcer,
    ScoreContext,
    check_collapse,
    draw_budget_mask,
    layer_counts,
    prunable_parameters,
)
from sparseflow.sparsity.backend import install_backend, trained_parameters
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


def _uses_budget_split(cfg: SparsityConfig) -> bool:
    """True when one budget is spread by ``distribution`` / ``dense_first_layer``."""
    return cfg.distribution != "uniform" or cfg.dense_first_layer


def mask_budget(cfg: SparsityConfig, params: dict[str, torch.Tensor],
                twin: nn.Module | None, model: nn.Module) -> Budget:
    """The :class:`~sparseflow.sparsity.Budget` of a sparse run's mask.

    - ``dense_width`` + ``per_layer``: each layer keeps its twin layer's count (the paper);
    - ``dense_width`` + ``total``: the twin's total, spread by ``distribution`` (+ the dense
      first layer);
    - one ``density`` with a non-uniform distribution or ``dense_first_layer``: the budget
      ``round(density · Σ numel)`` spread the same way;
    - otherwise per-layer ``round(density · numel)`` (at least 1) or the given per-layer
      densities/counts, exactly as always.
    """
    sizes = {n: p.numel() for n, p in params.items()}
    shapes = {n: tuple(p.shape) for n, p in params.items()}
    if cfg.dense_width is not None:
        if twin is None:
            raise ValueError("sparsity.dense_width needs the dense twin to count its weights")
        # per_layer counts also check that every twin layer fits in its sparse layer.
        per_layer = same_capacity_counts(model, twin, "per_layer")
        if cfg.matching == "per_layer":
            return Budget.per_layer(sizes, per_layer)
        return plan_budget(shapes, sum(per_layer.values()), cfg.distribution,
                           cfg.dense_first_layer)
    if _uses_budget_split(cfg) and not (cfg.layer_densities or cfg.layer_counts):
        budget = round(cfg.density * sum(sizes.values()))
        return plan_budget(shapes, budget, cfg.distribution, cfg.dense_first_layer)
    return Budget.per_layer(sizes, layer_counts(params, cfg.density, cfg.layer_densities,
                                                cfg.layer_counts))


def build_mask(cfg: SparsityConfig, model: nn.Module, generator: torch.Generator,
               twin: nn.Module | None = None, *, data: DataBundle | None = None,
               batch_size: int | None = None) -> Mask | None:
    """Choose the run's mask (None for a dense run) under its budget.

    The budget (:func:`mask_budget`) gives exact per-layer counts, or one global total for
    ``distribution: global``. Static maskers draw from ``generator`` (random) or rank the
    model's weights (magnitude); score maskers (snip, grasp, synflow) score the model on the
    data's device with scoring batches from ``generator`` (``batch_size`` = the run's
    ``train.batch_size`` unless ``sparsity.pai.batch_size``). The model's weights must already
    be the drawn ones (:func:`draw_initial_weights`); the model is not changed. A layer left
    with no active weight follows ``sparsity.pai.collapse``.
    """
    if not cfg.is_sparse:
        return None
    params = {n: p.detach() for n, p in prunable_parameters(model).items()}
    budget = mask_budget(cfg, params, twin, model)
    name = initial_mask_config(cfg).masker  # a dynamic masker's initial mask
    if MASKERS.meta(name).get("kind") == "score":
        if data is None:
            raise ConfigError(f"masker {name!r} scores the model on the run's data; build the "
                              "mask with the data bundle")
        device = data.train.x.device  # where training will run
        ctx = ScoreContext(model=model, budget=budget, data=data, input_shape=data.input_shape,
                           pai=cfg.pai, batch_size=cfg.pai.batch_size or batch_size or 0,
                           generator=generator, device=device)
        mask = MASKERS.get(name)(ctx)
    else:
        mask = draw_budget_mask(name, params, budget, generator)
    check_collapse(mask, cfg.pai.collapse, name)
    return mask


def twin_fans(twin: nn.Module | None) -> dict[str, tuple[int, int]] | None:
    """The dense twin's ``(fan_in, fan_out)`` per prunable layer (None without a twin)."""
    if twin is None:
        return None
    return {n: fans(p) for n, p in prunable_parameters(twin).items()}


def draw_initial_weights(cfg: ExperimentConfig, model: nn.Module, twin: nn.Module | None,
                         generator: torch.Generator) -> None:
    """Step 1 of the init policy, before the mask: draw every prunable weight in full.

    Mask-independent and from the init stream right after the model's own init, so the random
    masker's runs draw exactly what they always drew; scoring maskers see these weights.
    """
    draw_init_policy(cfg.sparsity.init_policy, model, init=cfg.model.init, generator=generator,
                     dense_fans=twin_fans(twin))


def scale_active_weights(cfg: ExperimentConfig, model: nn.Module, mask: Mask,
                         twin: nn.Module | None) -> dict[str, float]:
    """Step 2 of the init policy, after the mask: its factors, pruned weights zeroed; returns
    the std of each layer's active weights."""
    return scale_init_policy(cfg.sparsity.init_policy, model, mask, init=cfg.model.init,
                             dense_fans=twin_fans(twin))


def _batch_probe(cfg: ExperimentConfig) -> bool:
    """Whether the run's probe reads the training batch's raw gradient."""
    return cfg.gradflow.enabled and cfg.gradflow.probe_set == "batch"


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

    A sparse run's weights and mask come in three steps: the init policy draws every prunable
    weight in full (init stream), the masker chooses the mask (mask stream; score maskers see
    the drawn weights, on the data's device), the policy scales and zeroes.

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
    if cfg.sparsity.is_sparse:
        # draw (init stream, after the model's own init) → choose the mask → scale + zero.
        draw_initial_weights(cfg, model, twin, gens["init"])
    mask = build_mask(cfg.sparsity, model, gens["mask"], twin, data=data,
                      batch_size=cfg.train.batch_size)
    if mask is not None:
        scale_active_weights(cfg, model, mask, twin)
    model.to(device)
    # Before the enforcer (it attaches to these layers); a batch-mode probe reads every raw grad.
    install_backend(model, mask, cfg.sparsity.effective_backend, device,
                    dense_grads=_batch_probe(cfg), static=not cfg.sparsity.dynamic)
    # Under sparsity.backend compact the optimizer trains each layer's vector of active weights.
    optimizer = build_optimizer(trained_parameters(model), cfg.optim)
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
    targets = trained_parameters(model, decay_targets(model, reg.l2_on_all))
    if reg.l2 > 0:
        hooks.append(CoupledL2(targets, reg.l2))
    if reg.weight_decay > 0:
        base_lr = cfg.optim.lr if reg.decay_scaling == "schedule" else None
        hooks.append(DecoupledWeightDecay(targets, reg.weight_decay, optimizer, base_lr))
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
