"""Build a registered model family and initialize it from an explicit generator."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import nn

from sparseflow.models.activations import PARAMETRIC_ACTIVATIONS
from sparseflow.models.inits import fans
from sparseflow.prunable import PRUNABLE_TYPES, prunable_parameters
from sparseflow.registry import INITS, MODELS

if TYPE_CHECKING:
    from sparseflow.config.schema import ModelConfig

#: Normalization layers: weight → 1, bias → 0, running statistics reset.
NORM_TYPES: tuple[type[nn.Module], ...] = (
    nn.modules.batchnorm._NormBase,  # BatchNorm*d, SyncBatchNorm, InstanceNorm*d
    nn.LayerNorm,
    nn.GroupNorm,
)


def build_model(
    cfg: ModelConfig,
    input_shape: tuple[int, ...],
    num_classes: int,
    *,
    dropout: float = 0.0,
    generator: torch.Generator,
) -> nn.Module:
    """Construct the family ``cfg.name`` on CPU and initialize it with ``init_model_``.

    ``input_shape`` excludes the batch dimension. The global torch RNG is left untouched: the
    modules' own default inits (which draw from it) run inside ``fork_rng``, whose state is
    restored, and are then overwritten by ``init_model_`` from ``generator``. The same generator
    state therefore gives bitwise-identical parameters. Dropout layers get no generator; call
    :func:`~sparseflow.models.set_dropout_generator` before training.
    """
    builder = MODELS.get(cfg.name)
    with torch.random.fork_rng(devices=[]), torch.device("cpu"):
        model = builder(cfg, tuple(input_shape), num_classes, dropout)
    init_model_(model, cfg.init, generator)
    return model


def init_model_(model: nn.Module, init: str, generator: torch.Generator) -> None:
    """Initialize every parameter of ``model`` in place, drawing only from ``generator``.

    - prunable weights (:func:`prunable_parameters`, Linear/Conv, in model order): the init
      ``init`` of :data:`~sparseflow.registry.INITS`, with each weight's own fans;
    - biases of those layers: 0;
    - normalization layers: weight 1, bias 0, running statistics reset;
    - parametric activations (PReLU, SReLU): their deterministic ``reset_parameters()``.

    Any other parameter raises TypeError naming it: initializing it here would either draw from
    the global RNG or leave it at a value that does not depend on ``generator``.
    """
    fn = INITS.get(init)
    done: set[int] = set()  # ids of parameters initialized so far
    with torch.no_grad():
        for weight in prunable_parameters(model).values():
            fan_in, fan_out = fans(weight)
            fn(weight, fan_in=fan_in, fan_out=fan_out, generator=generator)
            done.add(id(weight))
        for mod in model.modules():
            if isinstance(mod, PRUNABLE_TYPES) and mod.bias is not None:
                mod.bias.zero_()
            elif isinstance(mod, NORM_TYPES):
                if getattr(mod, "weight", None) is not None:
                    mod.weight.fill_(1.0)
                if getattr(mod, "bias", None) is not None:
                    mod.bias.zero_()
                if hasattr(mod, "reset_running_stats"):
                    mod.reset_running_stats()
            elif isinstance(mod, PARAMETRIC_ACTIVATIONS):
                mod.reset_parameters()
            else:
                continue
            done.update(id(p) for p in mod.parameters(recurse=False))
    for name, p in model.named_parameters():
        if id(p) not in done:
            raise TypeError(
                f"init_model_ does not know how to initialize parameter {name!r}; supported: "
                "Linear/Conv weights and biases, normalization layers, PReLU/SReLU"
            )
