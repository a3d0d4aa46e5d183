"""Which layers of anyone's model the gradient-flow monitor measures, and where their masks are.

:func:`discover_layers` walks a model and returns one :class:`Layer` per measured weight, in
model order. It understands the masks people already use:

- plain weights of ``nn.Linear`` / ``nn.Conv1d/2d/3d`` (masks from a sparseflow
  :class:`~sparseflow.sparsity.mask.Mask` or a name → bool mapping, given by the caller);
- ``torch.nn.utils.prune``: the module holds a ``weight_orig`` parameter and a ``weight_mask``
  buffer (``weight = weight_orig * weight_mask``); the gradient read is ``weight_orig.grad``;
- parametrizations (``torch.nn.utils.parametrize``, as ``torch.ao.pruning`` uses): the trained
  tensor is ``module.parametrizations.weight.original``; the mask is the ``mask`` tensor of the
  first parametrization that holds one (``torch.ao.pruning``'s ``FakeSparsity`` does);
- ``nn.MultiheadAttention``: ``in_proj_weight`` (or ``q/k/v_proj_weight`` when the key/value
  dimensions differ from ``embed_dim``) and ``out_proj.weight``;
- ``nn.Embedding`` only when asked (``embeddings=True``).

A parametrization with several original tensors (``weight_norm``'s ``original0``/``original1``)
has no one trained weight: that layer is left out (``include_all=True`` measures its tensors as
separate parameters).

For a pruned or parametrized layer the gradient read is that of the original tensor; the
forward pass multiplies it by the mask, so it is already 0 at pruned positions (the unmasked
``gf1``/``gf2`` then equal the masked ones).

A Parameter reached by two names (tied weights, e.g. an embedding and an output layer) counts
once, under the first name in model order.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn
from torch.nn.utils import parametrize

from sparseflow.errors import SparseflowError
from sparseflow.prunable import PRUNABLE_TYPES

#: ``include=`` / ``exclude=``: glob pattern(s) on the layer or module name, or a callable on the
#: module name (True = keep).
LayerFilter = str | Iterable[str] | Callable[[str], bool] | None

#: Mask sources recorded in :attr:`Layer.mask_source`.
MASK_SOURCES = ("none", "mask", "prune", "parametrization")


class NoLayersError(SparseflowError, ValueError):
    """The monitor found no layer to measure (the message says what was looked for)."""


@dataclass(frozen=True)
class Layer:
    """One measured weight.

    Attributes:
        name: the layer's key in the measures and in a mask mapping (``fc.weight``,
            ``attn.in_proj_weight``), the *logical* weight name even when pruned/parametrized.
        parameter: the name of the trained Parameter whose ``.grad`` is read
            (``fc.weight_orig``, ``fc.parametrizations.weight.original`` or ``name`` itself).
        module: the name of the module holding it ("" for the root).
        shape: the weight's shape.
        kind: ``linear``, ``conv1d``/``conv2d``/``conv3d``, ``attention``, ``embedding`` or
            ``other`` (a parameter added by ``include_all``).
        mask_source: ``none`` (dense), ``mask`` (given by the caller), ``prune``
            (``torch.nn.utils.prune``'s buffer) or ``parametrization``.
        prunable: a weight layer (whose missing gradient is an error), not an ``include_all``
            extra (whose missing gradient is skipped).
    """

    name: str
    parameter: str
    module: str
    shape: tuple[int, ...]
    kind: str
    mask_source: str
    prunable: bool = True
    param: nn.Parameter = field(repr=False, compare=False, default=None)  # type: ignore[assignment]
    _mask_getter: Callable[[], Tensor | None] = field(
        repr=False, compare=False, default=lambda: None
    )

    def mask(self) -> Tensor | None:
        """The layer's current bool mask (True = active), read live; None when dense."""
        m = self._mask_getter()
        if m is None:
            return None
        return m if m.dtype == torch.bool else m != 0

    @property
    def total(self) -> int:
        """Number of weights."""
        return self.param.numel()

    @property
    def active(self) -> int:
        """Number of active (unpruned) weights, now."""
        m = self.mask()
        return self.total if m is None else int(m.sum())

    def __str__(self) -> str:
        return (
            f"{self.name} [{self.kind}, {tuple(self.shape)}, mask: {self.mask_source}, "
            f"{self.active}/{self.total} active]"
        )


def _kind(module: nn.Module) -> str | None:
    """The kind of a module whose weights count by default (None: not a weight layer)."""
    if isinstance(module, nn.MultiheadAttention):
        return "attention"
    if isinstance(module, PRUNABLE_TYPES):
        return type(module).__name__.lower() if not isinstance(module, nn.Linear) else "linear"
    if isinstance(module, nn.Embedding):
        return "embedding"
    return None


def _weight_names(module: nn.Module) -> list[str]:
    """The weight attributes of a layer module (``out_proj`` is its own Linear module)."""
    if isinstance(module, nn.MultiheadAttention):
        if module._qkv_same_embed_dim:
            return ["in_proj_weight"]
        return ["q_proj_weight", "k_proj_weight", "v_proj_weight"]
    return ["weight"]


def _mask_holder(module: nn.Module, attr: str) -> nn.Module | None:
    """The first parametrization of ``module.<attr>`` holding a ``mask`` tensor, or None."""
    for p in module.parametrizations[attr]:
        if isinstance(getattr(p, "mask", None), Tensor):
            return p
    return None


def _resolve(
    module: nn.Module, attr: str
) -> tuple[nn.Parameter, str, str, Callable[[], Tensor | None]] | None:
    """(trained Parameter, its attribute path in ``module``, mask source, live mask getter)."""
    if parametrize.is_parametrized(module, attr):
        original = getattr(module.parametrizations[attr], "original", None)
        if not isinstance(original, nn.Parameter):
            return None  # several originals (weight_norm's g and v): no one trained weight
        holder = _mask_holder(module, attr)
        if holder is None:
            return original, f"parametrizations.{attr}.original", "none", lambda: None
        return (
            original,
            f"parametrizations.{attr}.original",
            "parametrization",
            lambda: holder.mask,
        )
    orig = getattr(module, f"{attr}_orig", None)
    if isinstance(orig, nn.Parameter):  # torch.nn.utils.prune
        has_mask = isinstance(getattr(module, f"{attr}_mask", None), Tensor)
        getter = (lambda: getattr(module, f"{attr}_mask")) if has_mask else (lambda: None)
        return orig, f"{attr}_orig", "prune" if has_mask else "none", getter
    weight = getattr(module, attr, None)
    if isinstance(weight, nn.Parameter):
        return weight, attr, "none", lambda: None
    return None


def _join(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


def _as_predicate(spec: LayerFilter, default: bool) -> Callable[[str, str], bool]:
    """``(layer name, module name) → bool`` from a filter spec (None → ``default``)."""
    if spec is None:
        return lambda layer, module: default
    if callable(spec):
        return lambda layer, module: bool(spec(module))
    patterns = [spec] if isinstance(spec, str) else list(spec)
    return lambda layer, module: any(
        fnmatch.fnmatchcase(layer, p) or fnmatch.fnmatchcase(module, p) for p in patterns
    )


def discover_layers(
    model: nn.Module,
    include: LayerFilter = None,
    exclude: LayerFilter = None,
    embeddings: bool = False,
    include_all: bool = False,
) -> list[Layer]:
    """The weights the monitor measures, in model order (see the module docstring).

    Args:
        model: any ``nn.Module``.
        include: keep only layers matching (glob on the layer name, e.g. ``"blocks.*.attn*"``,
            or on the module name; or a callable on the module name).
        exclude: then drop the layers matching.
        embeddings: count ``nn.Embedding`` weights too.
        include_all: also measure every other trainable parameter (biases, normalization
            parameters), each counting as a layer (kind ``other``).

    Raises:
        NoLayersError: nothing left to measure; the message says what was looked for.
    """
    keep_in, keep_out = _as_predicate(include, True), _as_predicate(exclude, False)
    seen: set[int] = set()
    layers: list[Layer] = []
    for mod_name, module in model.named_modules():
        kind = _kind(module)
        if kind is None or (kind == "embedding" and not embeddings):
            continue
        for attr in _weight_names(module):
            resolved = _resolve(module, attr)
            if resolved is None or id(resolved[0]) in seen:
                continue
            param, path, source, getter = resolved
            seen.add(id(param))
            name = _join(mod_name, attr)
            if keep_in(name, mod_name) and not keep_out(name, mod_name):
                layers.append(Layer(name, _join(mod_name, path), mod_name, tuple(param.shape),
                                    kind, source, True, param, getter))  # fmt: skip
    if include_all:  # in parameter order, as model.named_parameters() lists them
        weights = {id(layer.param): layer for layer in layers}
        extras = {id(x.param): x for x in _other_parameters(model, seen, keep_in, keep_out)}
        layers = [
            weights.get(id(p)) or extras[id(p)]
            for _, p in model.named_parameters()
            if id(p) in weights or id(p) in extras
        ]
    if not layers:
        raise NoLayersError(_nothing_found(model, include, exclude, embeddings))
    return layers


def _other_parameters(
    model: nn.Module,
    seen: set[int],
    keep_in: Callable[[str, str], bool],
    keep_out: Callable[[str, str], bool],
) -> list[Layer]:
    """``include_all`` extras: every parameter not already a layer (no mask, kind ``other``)."""
    out = []
    for name, param in model.named_parameters():
        if id(param) in seen:
            continue
        seen.add(id(param))
        mod_name = name.rpartition(".")[0]
        if keep_in(name, mod_name) and not keep_out(name, mod_name):
            out.append(Layer(name, name, mod_name, tuple(param.shape), "other", "none", False,
                             param))  # fmt: skip
    return out


def _nothing_found(model: nn.Module, include: LayerFilter, exclude: LayerFilter,
                   embeddings: bool) -> str:  # fmt: skip
    """The NoLayersError message: what was looked for, what the model has, how to include."""
    names = [n for n, _ in model.named_parameters()][:8]
    filtered = "" if include is None and exclude is None else " (after include=/exclude=)"
    emb = "" if embeddings else " and Embedding (only with embeddings=True)"
    return (
        f"GradientFlowMonitor found no layer to measure{filtered}: it looks for the weights of "
        f"Linear, Conv1d/2d/3d and MultiheadAttention{emb}, plain, pruned with "
        "torch.nn.utils.prune (weight_orig + weight_mask) or parametrized "
        "(torch.nn.utils.parametrize, torch.ao.pruning); the model's parameters are "
        f"{names or 'none'}; include layers with include='<glob>' / exclude=..., "
        "embeddings=True, or include_all=True (every trainable parameter)"
    )
