"""Weight initializations, drawn only from an explicit generator.

Every entry of :data:`~sparseflow.registry.INITS` is a function::

    fn(weight, *, fan_in, fan_out, generator) -> None

that fills ``weight`` in place (under ``no_grad``). The fans are explicit rather than read off the
weight's shape because SC-SDC draws a *sparse* layer's active weights from its *dense twin's*
distribution: the caller passes the dense layer's fans for the sparse weight.

Each entry is registered with ``std=callable(fan_in, fan_out) -> float``, the standard deviation
it yields, read back by :func:`init_std` (for reports). Uniform inits draw from U(-b, b) with
b = std·√3, so both variants of a family share one standard deviation.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor

from sparseflow.errors import ConfigError
from sparseflow.registry import INITS

#: He et al. (2015) gain for the ReLU family. The init functions do not see the activation, so
#: the Kaiming entries always use √2 (the paper's default regime); Glorot has no gain.
RELU_GAIN = math.sqrt(2.0)


def fans(weight: Tensor) -> tuple[int, int]:
    """(fan_in, fan_out) of a Linear ``(out, in)`` or Conv ``(out, in/groups, *kernel)`` weight.

    Matches ``torch.nn.init``: the kernel's receptive field multiplies both fans.
    """
    if weight.dim() < 2:
        raise ValueError(
            f"fans need a weight with at least 2 dimensions (out, in, *kernel); got shape "
            f"{tuple(weight.shape)}"
        )
    receptive = math.prod(weight.shape[2:])  # 1 for Linear
    return int(weight.shape[1]) * receptive, int(weight.shape[0]) * receptive


def _check_fans(fan_in: int, fan_out: int) -> None:
    if fan_in < 1 or fan_out < 1:
        raise ValueError(f"fans must be positive; got fan_in={fan_in}, fan_out={fan_out}")


def _kaiming_std(fan_in: int, fan_out: int) -> float:
    _check_fans(fan_in, fan_out)
    return RELU_GAIN / math.sqrt(fan_in)  # fan_in mode: preserves forward variance


def _xavier_std(fan_in: int, fan_out: int) -> float:
    _check_fans(fan_in, fan_out)
    return math.sqrt(2.0 / (fan_in + fan_out))  # compromise of forward and backward variance


def _fill(weight: Tensor, draw: Callable[[Tensor], Tensor], generator: torch.Generator) -> None:
    """Apply ``draw`` (an in-place random fill using ``generator``) to ``weight``.

    Draws happen on the generator's device: a CPU generator can initialize a CUDA weight (the
    draw is made on CPU and copied), and the values do not depend on the weight's device.
    """
    with torch.no_grad():
        if weight.device == generator.device:
            draw(weight)
        else:
            buf = torch.empty(weight.shape, dtype=weight.dtype, device=generator.device)
            weight.copy_(draw(buf))


@INITS.register("kaiming_normal", std=_kaiming_std)
def kaiming_normal(
    weight: Tensor, *, fan_in: int, fan_out: int, generator: torch.Generator
) -> None:
    """He normal: N(0, 2/fan_in) (gain √2, fan_in mode)."""
    std = _kaiming_std(fan_in, fan_out)
    _fill(weight, lambda t: t.normal_(0.0, std, generator=generator), generator)


@INITS.register("kaiming_uniform", std=_kaiming_std)
def kaiming_uniform(
    weight: Tensor, *, fan_in: int, fan_out: int, generator: torch.Generator
) -> None:
    """He uniform: U(-b, b), b = √(6/fan_in) (gain √2, fan_in mode)."""
    bound = math.sqrt(3.0) * _kaiming_std(fan_in, fan_out)
    _fill(weight, lambda t: t.uniform_(-bound, bound, generator=generator), generator)


@INITS.register("xavier_normal", std=_xavier_std)
def xavier_normal(
    weight: Tensor, *, fan_in: int, fan_out: int, generator: torch.Generator
) -> None:
    """Glorot normal: N(0, 2/(fan_in + fan_out))."""
    std = _xavier_std(fan_in, fan_out)
    _fill(weight, lambda t: t.normal_(0.0, std, generator=generator), generator)


@INITS.register("xavier_uniform", std=_xavier_std)
def xavier_uniform(
    weight: Tensor, *, fan_in: int, fan_out: int, generator: torch.Generator
) -> None:
    """Glorot uniform: U(-b, b), b = √(6/(fan_in + fan_out))."""
    bound = math.sqrt(3.0) * _xavier_std(fan_in, fan_out)
    _fill(weight, lambda t: t.uniform_(-bound, bound, generator=generator), generator)


def init_std(name: str, fan_in: int, fan_out: int) -> float:
    """Standard deviation of the weights the init ``name`` draws for the given fans.

    Pure (draws nothing). Raises ConfigError for an unknown name or an init registered without
    a ``std`` callable.
    """
    std = INITS.meta(name).get("std")
    if std is None:
        raise ConfigError(
            f"init {name!r} was registered without std=...; its standard deviation is unknown"
        )
    return float(std(fan_in, fan_out))
