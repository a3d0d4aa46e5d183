"""SynFlow (Tanaka et al. 2020, "Pruning neural networks without any data by iteratively
conserving synaptic flow").

Reference: ``ganguli-lab/Synaptic-Flow`` (``Pruners/pruners.py`` class ``SynFlow``, ``prune.py``
``prune_loop``). Data-free: every parameter and buffer is replaced by its absolute value (on a
copy: the run's model is never changed, so nothing needs its signs restored), the model is put
in eval mode (BatchNorm uses its running statistics), an all-ones input of one example's shape
(batch 1) gives ``R = Σ model(1)``, and the score is ``|θ ⊙ ∂R/∂θ|``. Iterative: over K =
``pai.rounds`` rounds the density shrinks as ``d_k = d^((k+1)/K)`` (exponential) or
``1 − (1 − d)(k+1)/K`` (linear), k = 0..K−1; weights pruned in an earlier round are masked out
of the forward pass and score −∞, so they are never revived. ``pai.double`` scores in float64
(the product of |θ| over depth underflows float32 at high compression).

Per-layer budgets apply the schedule to each layer's own density (so each layer ends at exactly
its count); a global budget applies it to the total of the ranked layers.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor

from sparseflow.registry import MASKERS
from sparseflow.sparsity.mask import Mask
from sparseflow.sparsity.scoring import ScoreContext, prunable_of, scoring_copy
from sparseflow.sparsity.selection import Budget, select


def synflow_densities(density: float, rounds: int, schedule: str = "exponential") -> list[float]:
    """The density after each of ``rounds`` rounds: ``d^((k+1)/K)`` or linear, k = 0..K−1."""
    if schedule == "exponential":
        return [density ** ((k + 1) / rounds) for k in range(rounds)]
    return [1.0 - (1.0 - density) * (k + 1) / rounds for k in range(rounds)]


def _round_count(size: int, final: int, density: float, last: bool) -> int:
    """Weights kept after a round: ``round(density · size)`` in ``[final, size]``; exact last."""
    return final if last else min(size, max(final, round(density * size)))


def _round_targets(budget: Budget, rounds: int, schedule: str
                   ) -> list[tuple[dict[str, int] | None, int | None]]:
    """(per-layer counts, global total) to keep after each round; one of them is None."""
    out: list[tuple[dict[str, int] | None, int | None]] = []
    if budget.counts is not None:
        sched = {n: synflow_densities(budget.counts[n] / size, rounds, schedule)
                 for n, size in budget.sizes.items()}
        for k in range(rounds):
            out.append(({n: _round_count(size, budget.counts[n], sched[n][k], k == rounds - 1)
                         for n, size in budget.sizes.items()}, None))
        return out
    size = sum(budget.sizes[n] for n in budget.ranked)
    final = budget.ranked_total
    sched_total = synflow_densities(final / size if size else 1.0, rounds, schedule)
    return [(None, _round_count(size, final, sched_total[k], k == rounds - 1))
            for k in range(rounds)]


def synflow_scores(model: torch.nn.Module, names: list[str], input_shape: tuple[int, ...],
                   keep: Mapping[str, Tensor] | None = None) -> dict[str, Tensor]:
    """One SynFlow round on an already linearized ``model`` (|θ|, eval mode, its dtype/device).

    ``keep`` masks the weights of earlier rounds (True = still active; None = all). Returns
    ``|θ ⊙ ∂R/∂θ|`` per layer in ``names``, −∞ where ``keep`` is False.
    """
    params = dict(model.named_parameters())
    first = params[names[0]]
    ones = torch.ones((1, *input_shape), dtype=first.dtype, device=first.device)
    # The scored weights are leaves |θ| ⊙ keep: pruned ones contribute nothing to R.
    leaves = {}
    for n in names:
        w = params[n].detach()
        if keep is not None:
            w = w * keep[n].to(device=w.device)
        leaves[n] = w.clone().requires_grad_(True)
    r = torch.func.functional_call(model, leaves, (ones,)).sum()
    grads = torch.autograd.grad(r, list(leaves.values()))
    out = {}
    for (n, w), g in zip(leaves.items(), grads, strict=True):
        s = (w.detach() * g).abs()
        if keep is not None:
            s = s.masked_fill(~keep[n].to(s.device), float("-inf"))
        out[n] = s
    return out


def linearized_copy(ctx: ScoreContext) -> torch.nn.Module:
    """The scored copy: eval mode, float64 if ``pai.double``, every parameter/buffer ``|·|``."""
    model = scoring_copy(ctx.model, ctx.device).eval()
    if ctx.pai.double:
        model = model.double()
    with torch.no_grad():
        for t in [*model.parameters(), *model.buffers()]:
            if t.is_floating_point():
                t.abs_()
    return model


@MASKERS.register("synflow", kind="score")
def synflow_masker(ctx: ScoreContext) -> Mask:
    """SynFlow: data-free, iterative (sparsity.pai.rounds); keep the largest |θ ⊙ ∂R/∂θ|."""
    model = linearized_copy(ctx)
    names = list(prunable_of(model, ctx.budget))
    keep: dict[str, Tensor] | None = None
    mask = None
    for counts, total in _round_targets(ctx.budget, ctx.pai.rounds, ctx.pai.schedule):
        scores = synflow_scores(model, names, ctx.input_shape, keep)
        mask = select(scores, ctx.budget, counts=counts, total=total)
        keep = {n: mask[n] for n in names}
    assert mask is not None  # rounds ≥ 1
    return mask
