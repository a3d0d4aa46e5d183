"""The dynamic maskers: each is a *grow score* registered with ``kind="dynamic"``.

A dynamic masker is a function ``grow_score(weight, grad, generator) -> Tensor`` (the weight's
shape, higher = grown first) registered with ``MASKERS.register(name, kind="dynamic",
needs_grad=...)``. The drop rule (smallest ``|θ|``), the schedule and the bookkeeping are shared
(:mod:`sparseflow.sparsity.dst.hook`); ``grad`` is the raw gradient of the loss w.r.t. the
masked weights on the current batch (None unless ``needs_grad``). The initial mask is drawn by
``sparsity.dst.init_masker``.
"""

from __future__ import annotations

import torch
from torch import Tensor

from sparseflow.registry import MASKERS


@MASKERS.register("set", kind="dynamic", needs_grad=False)
def set_grow(weight: Tensor, grad: Tensor | None, generator: torch.Generator) -> Tensor:
    """SET (Mocanu 2018): every update drop the smallest |w|, regrow as many at random."""
    # Uniform scores: the top k among the candidates are a uniformly random k-subset.
    return torch.rand(weight.shape, generator=generator, dtype=torch.float64)


@MASKERS.register("rigl", kind="dynamic", needs_grad=True)
def rigl_grow(weight: Tensor, grad: Tensor | None, generator: torch.Generator) -> Tensor:
    """RigL (Evci 2020): every update drop the smallest |w|, regrow the largest |grad|."""
    if grad is None:
        raise ValueError("rigl grows by the gradient of the current batch; none was given")
    return grad.detach().abs()
