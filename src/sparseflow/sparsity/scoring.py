"""Pruning at initialization: the scoring protocol of score maskers.

A *score masker* is registered with ``MASKERS.register(name, kind="score")`` as a function
``masker(ctx: ScoreContext) -> Mask``. It scores the prunable weights of ``ctx.model`` (the model
as it will be trained, weights drawn by the init policy) and turns the scores into a mask with
:func:`~sparseflow.sparsity.selection.select`, which honours the run's
:class:`~sparseflow.sparsity.selection.Budget` (top-k per layer, or one global top-k).

Scoring never touches the run's model, its gradients or any random stream but the mask
generator: it works on :func:`scoring_copy`, a deep copy on the data's device, and its training
examples (:func:`scoring_batches`) are drawn from the mask generator, never the data generator,
so a sparse run and its dense twin see the same data order.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from sparseflow.config.schema import PaiConfig
from sparseflow.data import DataBundle
from sparseflow.errors import ConfigError
from sparseflow.models.dropout import SeededDropout
from sparseflow.prunable import prunable_parameters
from sparseflow.sparsity.selection import Budget


@dataclass
class ScoreContext:
    """What a score masker may read: the model to score, the budget, data and settings.

    ``model`` is the run's model (not to be changed: score a :func:`scoring_copy`); ``budget`` the
    counts or global total to keep; ``data`` the run's data bundle (None when only the input
    shape is known: data-free maskers only); ``input_shape`` one example's shape; ``pai`` the
    ``sparsity.pai`` settings; ``batch_size`` examples per scoring batch (``pai.batch_size`` or
    ``train.batch_size``); ``generator`` the run's mask generator; ``device`` where to score.
    """

    model: nn.Module
    budget: Budget
    data: DataBundle | None
    input_shape: tuple[int, ...]
    pai: PaiConfig
    batch_size: int
    generator: torch.Generator
    device: torch.device

    def need_data(self, method: str) -> DataBundle:
        """The data bundle, or a clear error for a data-driven method without one."""
        if self.data is None:
            raise ConfigError(f"masker {method!r} scores with training batches; build the mask "
                              "with the run's data")
        return self.data


def scoring_copy(model: nn.Module, device: torch.device) -> nn.Module:
    """A deep copy of ``model`` on ``device`` to score: the run's model stays as it was.

    Dropout is switched off in the copy (eval mode, no generator): its random stream belongs to
    training, and a score must not consume it. Everything else keeps the model's mode.
    """
    clone = copy.deepcopy(model).to(device)
    for mod in clone.modules():
        if isinstance(mod, SeededDropout | nn.Dropout):
            mod.eval()
            if isinstance(mod, SeededDropout):
                mod.generator = None
    for p in clone.parameters():
        p.grad = None
    return clone


def prunable_of(model: nn.Module, budget: Budget) -> dict[str, nn.Parameter]:
    """The prunable weights of ``model`` that ``budget`` masks, in model order."""
    params = prunable_parameters(model)
    return {n: params[n] for n in budget.sizes}


def scoring_batches(ctx: ScoreContext) -> Iterator[tuple[Tensor, Tensor]]:
    """``pai.batches`` mini-batches of ``batch_size`` training examples, on ``ctx.device``.

    Drawn without replacement from one permutation of the training split made with the mask
    generator (a fresh permutation when one is used up); augmentation is not applied.
    """
    train = ctx.need_data("scoring").train
    n = len(train)
    if n == 0:
        raise ConfigError("scoring at initialization needs training examples; the train split "
                          "is empty")
    order = torch.randperm(n, generator=ctx.generator)
    pos = 0
    for _ in range(ctx.pai.batches):
        take = []
        need = min(ctx.batch_size, n)
        while need:
            if pos == n:
                order, pos = torch.randperm(n, generator=ctx.generator), 0
            chunk = order[pos:pos + need]
            take.append(chunk)
            pos, need = pos + len(chunk), need - len(chunk)
        idx = torch.cat(take).to(train.x.device)
        yield train.x[idx].to(ctx.device), train.y[idx].to(ctx.device)
