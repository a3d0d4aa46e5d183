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

Each policy is two steps, kept apart in its registry metadata (``draw`` and ``scale``) so that a
mask can be chosen *between* them (:func:`draw_init_policy`, then the masker, then
:func:`scale_init_policy`): a mask-independent **draw** of the full tensor from ``generator``,
then a mask-dependent **scale** that draws nothing (per-unit or per-layer factors, then the
pruned positions zeroed). A masker that scores weights (magnitude, snip, grasp, synflow) thus
sees the weights that are trained (exactly, for the ``dense`` and ``standard`` policies; before
their mask-dependent factor for ``sparse_fanin`` and ``layer_scaled``). A masker that reads no
weight (random) gives the same result in either order, bit for bit.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
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


def _registered(name: str, draw: Callable[..., None], scale: Callable[..., float]
                ) -> Callable[..., float]:
    """Register the policy ``name`` as ``draw`` then ``scale`` (see the module docstring)."""

    def policy(weight: Tensor, keep: Tensor, *, init: str, generator: torch.Generator,
               dense_fans: tuple[int, int] | None) -> float:
        draw(weight, init=init, generator=generator, dense_fans=dense_fans)
        return scale(weight, keep, init=init, dense_fans=dense_fans)

    policy.__doc__ = draw.__doc__
    policy.__name__ = f"{name}_policy"
    return INIT_POLICIES.register(name, draw=draw, scale=scale)(policy)


def _need_dense_fans(dense_fans: tuple[int, int] | None) -> tuple[int, int]:
    if dense_fans is None:
        raise ValueError("the 'dense' init policy needs the dense twin's fans (dense_fans)")
    return dense_fans


def _dense_draw(weight: Tensor, *, init: str, generator: torch.Generator,
                dense_fans: tuple[int, int] | None) -> None:
    """Active weights drawn from the dense twin's layer init (D's fans): the paper's default."""
    fan_in, fan_out = _need_dense_fans(dense_fans)
    INITS.get(init)(weight, fan_in=fan_in, fan_out=fan_out, generator=generator)


def _dense_scale(weight: Tensor, keep: Tensor, *, init: str,
                 dense_fans: tuple[int, int] | None) -> float:
    _zero_pruned_(weight, keep)
    return init_std(init, *_need_dense_fans(dense_fans))


def _own_draw(weight: Tensor, *, init: str, generator: torch.Generator,
              dense_fans: tuple[int, int] | None) -> None:
    """The init with S's own fans (the full tensor; what the scale step rescales)."""
    own_in, own_out = fans(weight)
    INITS.get(init)(weight, fan_in=own_in, fan_out=own_out, generator=generator)


def _sparse_fanin_draw(weight: Tensor, *, init: str, generator: torch.Generator,
                       dense_fans: tuple[int, int] | None) -> None:
    """Each unit's std from its active fan-in (Evci et al. 2020, unit-scaled); same family.

    A unit is an output row (Linear) or output channel (Conv). Unit r with a_r active inputs
    gets std ``init_std(init, a_r, f)`` where f is the layer's *mean active fan-out*,
    ``max(1, round(active / in))`` (active weights per input unit/channel, counting the kernel
    like torch's fans do); f matters only for fan-out-aware inits (Xavier). Drawn as the init
    with S's own fans, then each row rescaled by target/drawn std, so normal stays normal and
    uniform stays uniform. Units with no active input stay 0. Returns the std of all active
    weights together, ``sqrt(Σ a_r σ_r² / Σ a_r)`` (0 if none is active).
    """
    _own_draw(weight, init=init, generator=generator, dense_fans=dense_fans)


def _sparse_fanin_scale(weight: Tensor, keep: Tensor, *, init: str,
                        dense_fans: tuple[int, int] | None) -> float:
    out_units, in_units = weight.shape[0], weight.shape[1]
    active_in = keep.reshape(out_units, -1).sum(dim=1).cpu()  # (out,) active fan-in per unit
    active = int(active_in.sum())
    fan_out = max(1, round(active / in_units))
    drawn = init_std(init, *fans(weight))
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


def _layer_scaled_draw(weight: Tensor, *, init: str, generator: torch.Generator,
                       dense_fans: tuple[int, int] | None) -> None:
    """The init with S's own fans times 1/sqrt(layer density) (Liu et al. 2019)."""
    _own_draw(weight, init=init, generator=generator, dense_fans=dense_fans)


def _layer_scaled_scale(weight: Tensor, keep: Tensor, *, init: str,
                        dense_fans: tuple[int, int] | None) -> float:
    active = int(keep.sum())
    _zero_pruned_(weight, keep)  # before the multiply, so pruned positions stay +0.0
    if active == 0:
        return 0.0
    factor = 1.0 / math.sqrt(active / weight.numel())
    weight.mul_(factor)
    return init_std(init, *fans(weight)) * factor


def _standard_draw(weight: Tensor, *, init: str, generator: torch.Generator,
                   dense_fans: tuple[int, int] | None) -> None:
    """S's own init as built, only masked (draws nothing; ``init`` names the init used)."""


def _standard_scale(weight: Tensor, keep: Tensor, *, init: str,
                    dense_fans: tuple[int, int] | None) -> float:
    _zero_pruned_(weight, keep)
    return init_std(init, *fans(weight))


dense_policy = _registered("dense", _dense_draw, _dense_scale)
sparse_fanin_policy = _registered("sparse_fanin", _sparse_fanin_draw, _sparse_fanin_scale)
layer_scaled_policy = _registered("layer_scaled", _layer_scaled_draw, _layer_scaled_scale)
standard_policy = _registered("standard", _standard_draw, _standard_scale)


def _check_mask(params: Mapping[str, nn.Parameter], mask: Mapping[str, Tensor]) -> None:
    """ConfigError unless every masked name is a prunable weight of the same shape."""
    for name, t in mask.items():
        if name not in params:
            raise ConfigError(f"mask layer {name!r} is not a prunable weight of the model; "
                              f"prunable weights: {', '.join(params)}")
        if tuple(t.shape) != tuple(params[name].shape):
            raise ConfigError(f"mask of {name!r} has shape {tuple(t.shape)} but the weight has "
                              f"{tuple(params[name].shape)}")


def _checked(policy: str, sparse: nn.Module, init: str,
             dense_fans: Mapping[str, tuple[int, int]] | None) -> dict[str, nn.Parameter]:
    """The prunable weights of ``sparse``, after checking ``policy``, ``init`` and the fans."""
    if policy not in INIT_POLICIES:
        hint = closest(policy, INIT_POLICIES.names())
        raise ConfigError(f"unknown init policy {policy!r}."
                          + (f" Did you mean {hint!r}?" if hint else "")
                          + f" Valid init policies: {', '.join(INIT_POLICIES.names())}.")
    INITS.check(init)
    params = prunable_parameters(sparse)
    if policy == "dense":
        if dense_fans is None:
            raise ValueError("the 'dense' init policy draws from the dense twin's layer "
                             "distributions; pass dense_fans (name → (fan_in, fan_out))")
        missing = [n for n in params if n not in dense_fans]
        if missing:
            raise ConfigError(f"dense_fans lacks the layers {', '.join(map(repr, missing))}")
    return params


def _keep_of(mask: Mapping[str, Tensor], name: str, weight: Tensor) -> Tensor:
    if name in mask:
        return mask[name].to(device=weight.device, dtype=torch.bool)
    return torch.ones_like(weight, dtype=torch.bool)


def draw_init_policy(policy: str, sparse: nn.Module, *, init: str, generator: torch.Generator,
                     dense_fans: Mapping[str, tuple[int, int]] | None = None) -> None:
    """Step 1 of ``policy``: draw every prunable weight of ``sparse`` in full, mask-independent.

    Layers are visited in model order, each drawing from ``generator`` (never the global RNG);
    ``standard`` draws nothing. Follow with :func:`scale_init_policy` once the mask is chosen.
    """
    params = _checked(policy, sparse, init, dense_fans)
    draw = INIT_POLICIES.meta(policy)["draw"]
    with torch.no_grad():
        for name, weight in params.items():
            df = None if dense_fans is None else dense_fans.get(name)
            draw(weight, init=init, generator=generator, dense_fans=df)


def scale_init_policy(policy: str, sparse: nn.Module, mask: Mapping[str, Tensor], *, init: str,
                      dense_fans: Mapping[str, tuple[int, int]] | None = None
                      ) -> dict[str, float]:
    """Step 2 of ``policy``: the mask-dependent factors, then pruned positions set to +0.

    Draws nothing. Returns layer name → std of the distribution of the layer's active weights.
    """
    params = _checked(policy, sparse, init, dense_fans)
    _check_mask(params, mask)
    scale = INIT_POLICIES.meta(policy)["scale"]
    stds: dict[str, float] = {}
    with torch.no_grad():
        for name, weight in params.items():
            df = None if dense_fans is None else dense_fans.get(name)
            stds[name] = scale(weight, _keep_of(mask, name, weight), init=init, dense_fans=df)
    return stds


def apply_init_policy(policy: str, sparse: nn.Module, mask: Mapping[str, Tensor], *, init: str,
                      generator: torch.Generator,
                      dense_fans: Mapping[str, tuple[int, int]] | None = None
                      ) -> dict[str, float]:
    """(Re)initialize the active weights of every prunable layer of ``sparse`` by ``policy``.

    :func:`draw_init_policy` then :func:`scale_init_policy` for a mask chosen beforehand.
    Layers are visited in model order, each drawing from ``generator`` (never the global RNG);
    pruned positions end at exactly 0. A prunable layer absent from ``mask`` is dense (all
    active). Only prunable weights change; biases, norms and activations are untouched.
    ``dense_fans`` maps each layer to its dense twin's ``(fan_in, fan_out)``
    (:func:`sparseflow.models.fans` of the twin's weight); the ``dense`` policy needs it
    (ValueError without it, ConfigError if a layer is missing).

    Returns layer name → std of the distribution the layer's active weights were drawn from.
    """
    _check_mask(_checked(policy, sparse, init, dense_fans), mask)
    draw_init_policy(policy, sparse, init=init, generator=generator, dense_fans=dense_fans)
    return scale_init_policy(policy, sparse, mask, init=init, dense_fans=dense_fans)
