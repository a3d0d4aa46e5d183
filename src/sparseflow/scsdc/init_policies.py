"""Init-matching policies: (re)draw the *active* weights of a masked sparse model.

SC-SDC asks that the active weights of S's layer l follow the same distribution P^l as the
weights of its dense twin D's layer l. Which P^l to use is a choice; each policy here is one,
registered in :data:`INIT_POLICIES` as a per-layer function::

    policy(weight, keep, *, init, generator, dense_fans) -> float

``weight`` is a prunable weight ``(out, in, *kernel)`` changed in place, ``keep`` its bool mask
(same shape and device), ``init`` a name in :data:`~sparseflow.registry.INITS`, ``dense_fans``
the twin layer's ``(fan_in, fan_out)`` (or None). It returns the standard deviation of the
distribution the active weights were drawn from (theory, not the sample std), for the pair
table. Every policy draws only from ``generator`` and leaves pruned positions at exactly +0.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor, nn

from sparseflow.errors import ConfigError
from sparseflow.models.inits import fans, init_std
from sparseflow.prunable import prunable_parameters
from sparseflow.registry import INITS, Registry, closest

#: Init-matching policies by name (``sparseflow list`` may show them: each has a docstring).
INIT_POLICIES: Registry[Any] = Registry("init policy")


def _zero_pruned_(weight: Tensor, keep: Tensor) -> None:
    # masked_fill writes +0.0 (a multiply by 0 would leave -0.0 for negative draws).
    weight.masked_fill_(~keep, 0.0)


@INIT_POLICIES.register("dense")
def dense_policy(weight: Tensor, keep: Tensor, *, init: str, generator: torch.Generator,
                 dense_fans: tuple[int, int] | None) -> float:
    """Active weights drawn from the dense twin's layer init (D's fans): the paper's default."""
    if dense_fans is None:
        raise ValueError("the 'dense' init policy needs the dense twin's fans (dense_fans)")
    fan_in, fan_out = dense_fans
    INITS.get(init)(weight, fan_in=fan_in, fan_out=fan_out, generator=generator)
    _zero_pruned_(weight, keep)
    return init_std(init, fan_in, fan_out)


@INIT_POLICIES.register("sparse_fanin")
def sparse_fanin_policy(weight: Tensor, keep: Tensor, *, init: str, generator: torch.Generator,
                        dense_fans: tuple[int, int] | None) -> float:
    """Each unit's std from its active fan-in (Evci et al. 2020, unit-scaled); same family.

    A unit is an output row (Linear) or output channel (Conv). Unit r with a_r active inputs
    gets std ``init_std(init, a_r, f)`` where f is the layer's *mean active fan-out*,
    ``max(1, round(active / in))`` (active weights per input unit/channel, counting the kernel
    like torch's fans do); f matters only for fan-out-aware inits (Xavier). Drawn as the init
    with S's own fans, then each row rescaled by target/drawn std, so normal stays normal and
    uniform stays uniform. Units with no active input stay 0. Returns the std of all active
    weights together, ``sqrt(Σ a_r σ_r² / Σ a_r)`` (0 if none is active).
    """
    out_units, in_units = weight.shape[0], weight.shape[1]
    active_in = keep.reshape(out_units, -1).sum(dim=1).cpu()  # (out,) active fan-in per unit
    active = int(active_in.sum())
    fan_out = max(1, round(active / in_units))
    own_in, own_out = fans(weight)
    INITS.get(init)(weight, fan_in=own_in, fan_out=own_out, generator=generator)
    drawn = init_std(init, own_in, own_out)
    target = torch.zeros(out_units, dtype=torch.float64)  # (out,) target std per unit
    for a in torch.unique(active_in).tolist():  # one init_std call per distinct fan-in
        if a > 0:
            target[active_in == a] = init_std(init, int(a), fan_out)
    scale = (target / drawn).to(device=weight.device, dtype=weight.dtype)
    weight.mul_(scale.view(out_units, *([1] * (weight.dim() - 1))))
    _zero_pruned_(weight, keep)
    if active == 0:
        return 0.0
    return math.sqrt(float((active_in.double() * target**2).sum()) / active)


@INIT_POLICIES.register("layer_scaled")
def layer_scaled_policy(weight: Tensor, keep: Tensor, *, init: str, generator: torch.Generator,
                        dense_fans: tuple[int, int] | None) -> float:
    """The init with S's own fans times 1/sqrt(layer density) (Liu et al. 2019)."""
    fan_in, fan_out = fans(weight)
    INITS.get(init)(weight, fan_in=fan_in, fan_out=fan_out, generator=generator)
    active = int(keep.sum())
    _zero_pruned_(weight, keep)
    if active == 0:
        return 0.0
    factor = 1.0 / math.sqrt(active / weight.numel())
    weight.mul_(factor)
    return init_std(init, fan_in, fan_out) * factor


@INIT_POLICIES.register("standard")
def standard_policy(weight: Tensor, keep: Tensor, *, init: str, generator: torch.Generator,
                    dense_fans: tuple[int, int] | None) -> float:
    """S's own init as built, only masked (draws nothing; ``init`` names the init used)."""
    _zero_pruned_(weight, keep)
    return init_std(init, *fans(weight))


def _check_mask(params: Mapping[str, nn.Parameter], mask: Mapping[str, Tensor]) -> None:
    """ConfigError unless every masked name is a prunable weight of the same shape."""
    for name, t in mask.items():
        if name not in params:
            raise ConfigError(f"mask layer {name!r} is not a prunable weight of the model; "
                              f"prunable weights: {', '.join(params)}")
        if tuple(t.shape) != tuple(params[name].shape):
            raise ConfigError(f"mask of {name!r} has shape {tuple(t.shape)} but the weight has "
                              f"{tuple(params[name].shape)}")


def apply_init_policy(policy: str, sparse: nn.Module, mask: Mapping[str, Tensor], *, init: str,
                      generator: torch.Generator,
                      dense_fans: Mapping[str, tuple[int, int]] | None = None
                      ) -> dict[str, float]:
    """(Re)initialize the active weights of every prunable layer of ``sparse`` by ``policy``.

    Layers are visited in model order, each drawing from ``generator`` (never the global RNG);
    pruned positions end at exactly 0. A prunable layer absent from ``mask`` is dense (all
    active). Only prunable weights change; biases, norms and activations are untouched.
    ``dense_fans`` maps each layer to its dense twin's ``(fan_in, fan_out)``
    (:func:`sparseflow.models.fans` of the twin's weight); the ``dense`` policy needs it
    (ValueError without it, ConfigError if a layer is missing).

    Returns layer name → std of the distribution the layer's active weights were drawn from.
    """
    if policy not in INIT_POLICIES:
        hint = closest(policy, INIT_POLICIES.names())
        raise ConfigError(f"unknown init policy {policy!r}."
                          + (f" Did you mean {hint!r}?" if hint else "")
                          + f" Valid init policies: {', '.join(INIT_POLICIES.names())}.")
    INITS.check(init)
    params = prunable_parameters(sparse)
    _check_mask(params, mask)
    if policy == "dense":
        if dense_fans is None:
            raise ValueError("the 'dense' init policy draws from the dense twin's layer "
                             "distributions; pass dense_fans (name → (fan_in, fan_out))")
        missing = [n for n in params if n not in dense_fans]
        if missing:
            raise ConfigError(f"dense_fans lacks the layers {', '.join(map(repr, missing))}")
    fn = INIT_POLICIES.get(policy)
    stds: dict[str, float] = {}
    with torch.no_grad():
        for name, weight in params.items():
            if name in mask:
                keep = mask[name].to(device=weight.device, dtype=torch.bool)
            else:
                keep = torch.ones_like(weight, dtype=torch.bool)
            df = None if dense_fans is None else dense_fans.get(name)
            stds[name] = fn(weight, keep, init=init, generator=generator, dense_fans=df)
    return stds
