"""Build a registered model family and initialize it from an explicit generator."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
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


def meta_model(cfg: ModelConfig, input_shape: tuple[int, ...], num_classes: int, *,
               dropout: float = 0.0) -> nn.Module:
    """The family ``cfg.name`` built on the meta device: shapes only, no memory, no random
    draws. Builder errors (a bad depth, ...) surface here as they would in :func:`build_model`."""
    builder = MODELS.get(cfg.name)
    with torch.device("meta"):
        return builder(cfg, tuple(input_shape), num_classes, dropout)


def parameter_count(model: nn.Module) -> int:
    """Elements of every parameter and buffer of ``model`` (a meta model is fine)."""
    return sum(t.numel() for t in (*model.parameters(), *model.buffers()))


def _cgroup_available() -> int | None:
    """Bytes left under this process's cgroup-v2 memory limit (None when unlimited/unknown)."""
    try:
        root = Path("/sys/fs/cgroup")
        limit = (root / "memory.max").read_text().strip()
        if limit == "max":
            return None
        return max(int(limit) - int((root / "memory.current").read_text()), 0)
    except (OSError, ValueError):
        return None


def available_memory() -> int | None:
    """Bytes of memory this process can still use, or None when the system does not say.

    Linux: ``MemAvailable`` of /proc/meminfo (and the cgroup limit, when lower); elsewhere the
    physical memory from ``os.sysconf`` (an upper bound, so a refusal is never spurious).
    """
    found: list[int] = []
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                found.append(int(line.split()[1]) * 1024)  # the file says kB (KiB)
                break
    except (OSError, ValueError, IndexError):
        pass
    if not found:
        with contextlib.suppress(AttributeError, ValueError, OSError):
            found.append(os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    cgroup = _cgroup_available()
    if cgroup is not None:
        found.append(cgroup)
    return min(found) if found else None


def check_fits(elements: int, copies: int, available: int | None, what: str,
               held: str = "weights, gradients and optimizer state") -> str | None:
    """A one-line problem when ``elements`` float32 values held ``copies`` times (weights,
    gradients, optimizer state) exceed ``available`` bytes; None when they fit or memory is
    unknown."""
    need = elements * copies * 4  # float32
    if available is None or need <= available:
        return None
    return (f"{what} has {elements:,} parameters, needing at least {_gib(need)} for {held}, "
            f"but only {_gib(available)} of memory is available; "
            "use a smaller model.width (or model.hidden_layers / model.depth)")


def _gib(n: int) -> str:
    return f"{n / 2**30:,.1f} GiB" if n >= 2**30 else f"{n / 2**20:.1f} MiB"
