"""GraSP (Wang et al. 2020, "Picking winning tickets before training by preserving gradient
flow").

References: ``alecwangcq/GraSP`` (``pruner/GraSP.py``) and its port in ``ganguli-lab/Synaptic-Flow``
(``Pruners/pruners.py``, class ``GraSP``). Logits are divided by a temperature T (200). First
pass: ``g = Σ_b ∇_θ L_b`` without a graph. Second pass, over the same batches: ``Hg = Σ_b
∇_θ (g · ∇_θ L_b)`` (double backward, ``create_graph``), the Hessian-gradient product.

Sign convention (both references agree): the original computes ``s = −θ ⊙ Hg`` and *removes*
the weights of largest s (keeps ``s ≤ threshold``); the port computes ``s = +θ ⊙ Hg`` and keeps
the largest (prunes ``s ≤ threshold``). Either way the weights kept are those of **largest
θ ⊙ Hg** — removing them would reduce the gradient norm least / increase it most. Here the
score is ``θ ⊙ Hg`` and the largest are kept. The references' division by ``|Σ s| + 1e-10`` is
a positive constant and changes no ranking, so it is left out. The original re-initializes
Linear layers (Xavier) and draws class-balanced batches; the port does neither, nor does this.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from sparseflow.registry import MASKERS
from sparseflow.sparsity.mask import Mask
from sparseflow.sparsity.scoring import ScoreContext, prunable_of, scoring_batches, scoring_copy
from sparseflow.sparsity.selection import select


def grasp_hg(ctx: ScoreContext) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
    """``(θ, Hg)`` per masked layer for the GraSP score (on ``ctx.device``, a scored copy)."""
    model = scoring_copy(ctx.model, ctx.device)
    params = prunable_of(model, ctx.budget)
    weights = list(params.values())
    batches = list(scoring_batches(ctx))  # the same batches in both passes, as the original
    temp = ctx.pai.temperature
    g = [torch.zeros_like(w) for w in weights]
    for x, y in batches:
        loss = F.cross_entropy(model(x) / temp, y)
        for acc, gb in zip(g, torch.autograd.grad(loss, weights), strict=True):
            acc.add_(gb)
    hg = [torch.zeros_like(w) for w in weights]
    for x, y in batches:
        loss = F.cross_entropy(model(x) / temp, y)
        grads = torch.autograd.grad(loss, weights, create_graph=True)
        z = sum((gs * gb).sum() for gs, gb in zip(g, grads, strict=True))
        for acc, h in zip(hg, torch.autograd.grad(z, weights), strict=True):
            acc.add_(h)
    names = list(params)
    return ({n: w.detach() for n, w in params.items()}, dict(zip(names, hg, strict=True)))


def grasp_scores(ctx: ScoreContext) -> dict[str, Tensor]:
    """``θ ⊙ Hg`` per masked layer: the largest are kept (see the module docstring)."""
    theta, hg = grasp_hg(ctx)
    return {n: theta[n] * hg[n] for n in theta}


@MASKERS.register("grasp", kind="score")
def grasp_masker(ctx: ScoreContext) -> Mask:
    """GraSP: keep the largest θ ⊙ Hg (logits / sparsity.pai.temperature; gradient flow kept)."""
    return select(grasp_scores(ctx), ctx.budget)
