"""SNIP (Lee et al. 2019, "SNIP: single-shot network pruning based on connection sensitivity").

Reference: ``namhoonlee/snip-public``; PyTorch port ``ganguli-lab/Synaptic-Flow``
(``Pruners/pruners.py``, class ``SNIP``). Connection sensitivity of weight θ_i is
``|∂L/∂c_i|`` at c = 1 for the masked weights ``c ⊙ θ``, i.e. ``|g_i · θ_i|`` with
``g = ∂L/∂θ``; the port sums the gradients of several mini-batches before taking ``|·|``, as here.
The reference divides by the total score, which changes no ranking (per layer or global), so it
is left out. Biases and normalization parameters are never pruned (the port's default).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from sparseflow.registry import MASKERS
from sparseflow.sparsity.mask import Mask
from sparseflow.sparsity.scoring import ScoreContext, prunable_of, scoring_batches, scoring_copy
from sparseflow.sparsity.selection import select


def snip_scores(ctx: ScoreContext) -> dict[str, Tensor]:
    """``|θ ⊙ Σ_b ∂L_b/∂θ|`` per masked layer (float32, on ``ctx.device``).

    L_b is the mean cross-entropy of scoring batch b (:func:`scoring_batches`); the model is
    scored in its own mode (train: BN uses batch statistics, dropout off) on a copy.
    """
    model = scoring_copy(ctx.model, ctx.device)
    params = prunable_of(model, ctx.budget)
    weights = list(params.values())
    total = [torch.zeros_like(w) for w in weights]
    for x, y in scoring_batches(ctx):
        loss = F.cross_entropy(model(x), y)
        for acc, g in zip(total, torch.autograd.grad(loss, weights), strict=True):
            acc.add_(g)
    return {n: (g * w.detach()).abs() for (n, w), g in zip(params.items(), total, strict=True)}


@MASKERS.register("snip", kind="score")
def snip_masker(ctx: ScoreContext) -> Mask:
    """SNIP: keep the largest |g ⊙ w| (gradient summed over sparsity.pai.batches batches)."""
    return select(snip_scores(ctx), ctx.budget)
