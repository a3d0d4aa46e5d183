"""Checks a run's config as far as it can before anything is trained or written.

``sparseflow train`` (also with ``--dry-run``) and ``sparseflow pair`` call :func:`preflight`,
so a dry run refuses exactly what the real run refuses, and every problem found is reported
in one line instead of only the first one the training code happens to meet.
"""

from __future__ import annotations

import torch

from sparseflow.config.schema import ExperimentConfig
from sparseflow.data import DataBundle, load_data
from sparseflow.data.load import DEFAULT_NUM_SAMPLES, check_num_samples
from sparseflow.errors import ConfigError
from sparseflow.models.build import available_memory, check_fits, meta_model, parameter_count
from sparseflow.prunable import prunable_parameters

#: Copies of the parameters an optimizer keeps as state (momentum / second moments).
OPTIMIZER_STATES: dict[str, int] = {"sgd": 1, "momentum": 1, "nesterov": 1, "adagrad": 1,
                                    "rmsprop": 2, "adam": 2, "adamw": 2}


def _memory_available(cfg: ExperimentConfig) -> int | None:
    if cfg.train.device != "cpu" and torch.cuda.is_available():
        return int(torch.cuda.mem_get_info()[0])
    return available_memory()


def model_problems(cfg: ExperimentConfig, input_shape: tuple[int, ...],
                   num_classes: int, *, training: bool = True) -> list[str]:
    """Problems of the model at these shapes, built on the meta device: builder errors (a bad
    depth, ...), a size that cannot fit in memory, a density that empties a layer."""
    try:
        model = meta_model(cfg.model, input_shape, num_classes,
                           dropout=cfg.regularization.dropout)
    except ConfigError as exc:
        return [str(exc)]
    n = parameter_count(model)
    density = density_problem(cfg, {k: p.numel() for k, p in prunable_parameters(model).items()})
    # Weights + gradients + optimizer state; an unknown optimizer counts as adam (two);
    # plain sgd keeps a momentum buffer only when it has momentum.
    states = OPTIMIZER_STATES.get(cfg.optim.name, 2)
    if cfg.optim.name == "sgd" and not cfg.optim.momentum:
        states = 0
    copies, held = (2 + states, "weights, gradients and optimizer state") if training \
        else (1, "its weights")
    problem = check_fits(n, copies, _memory_available(cfg),
                         f"model {cfg.model.name} at width {cfg.model.width}", held)
    return [p for p in (problem, density) if p]


def density_problem(cfg: ExperimentConfig, sizes: dict[str, int]) -> str | None:
    """A problem when a density leaves a layer (``sizes``: name → weights) with less than one
    active weight as computed (``round(d · n)`` < 1).

    Refused rather than rounded up to 1: the run would silently have a far higher density than
    the one asked for, while its config (and id) still say the asked one. Exactly one weight
    per layer remains available as ``sparsity.layer_counts``.
    """
    sp = cfg.sparsity
    if sp.dense_width is not None or not sp.is_sparse:
        return None
    short: list[tuple[int, str, float]] = []  # (weights, layer, density) left with 0 active
    for name, size in sizes.items():
        if sp.layer_counts and name in sp.layer_counts:
            continue
        d = (sp.layer_densities or {}).get(name, sp.density)
        if round(d * size) < 1:
            short.append((size, name, d))
    if not short:
        return None
    size, name, d = min(short)
    key = f"sparsity.layer_densities.{name}" if d != sp.density else "sparsity.density"
    return (f"{key}={d:g} leaves layer {name!r} ({size:,} weights) with round({d:g} × "
            f"{size:,}) = 0 active weights ({len(short)} layer(s) so); use a density of at "
            f"least {1 / size:.3g} (or sparsity.layer_counts for exact counts)")


def preflight(cfg: ExperimentConfig, *, training: bool = True) -> DataBundle:
    """Load the data and check everything that needs its shapes; ConfigError listing every
    problem found. Returns the loaded data, so the run need not load it again. ``training``
    False (``sparseflow pair``) counts the weights only in the memory estimate."""
    problems: list[str] = []
    data_cfg = cfg.data
    try:
        check_num_samples(data_cfg)
    except ConfigError as exc:
        problems.append(str(exc))
        # The datasets that refuse num_samples ignore it: load as if it were removed, to
        # find the remaining problems too.
        data_cfg = data_cfg.model_copy(update={"num_samples": DEFAULT_NUM_SAMPLES})
    data = load_data(data_cfg)
    problems += model_problems(cfg, data.input_shape, data.num_classes, training=training)
    if problems:
        raise ConfigError("; ".join(problems))
    return data
