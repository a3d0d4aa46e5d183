"""One mask update of one layer: drop the weakest active weights, grow as many new ones.

Pure tensor functions (CPU, bool masks), shared by every dynamic masker; what differs between
SET and RigL is only the *grow score* (:mod:`sparseflow.sparsity.dst.maskers`).

Rules (the rigl reference, ``SparseSETOptimizerBase._get_update_op``, with two documented
choices of ours):

- drop the ``k`` active weights of smallest ``|θ|``; ties go to the lower flat index (a stable
  sort; the reference breaks ties with N(0, 1e-5) noise instead, which also reorders weights
  closer than the noise);
- grow the ``k`` positions of highest grow score among those inactive *after* the drop, so a
  just-dropped weight may regrow; ties go to the lower flat index (as TF's ``top_k``);
- the layer's active count is unchanged;
- the positions whose state changes, ``old ^ new``, restart from 0: the weight and every
  optimizer-state tensor of the weight's shape are set to 0 (the reference resets the slots of
  grown connections and starts them at 0; a dropped weight must be 0 with zero state to stay
  pruned). A weight dropped and regrown in the same update is left as it was, value and state
  (the reference's ``reinit_when_same=False``): for it nothing changed. So a layer with every
  weight active never changes.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


def drop_and_grow(magnitude: Tensor, mask: Tensor, grow_score: Tensor,
                  k: int) -> tuple[Tensor, Tensor, Tensor]:
    """The new mask of one layer and the dropped and grown positions.

    Args:
        magnitude: ``|θ|`` of the layer (any float dtype, the mask's shape).
        mask: bool, True = active (the mask before the update).
        grow_score: higher grows first (the mask's shape).
        k: how many to drop and grow (clipped to the active count).

    Returns:
        ``(new_mask, dropped, grown)``, bool tensors of the mask's shape on the CPU;
        ``new_mask.sum() == mask.sum()``; ``dropped ⊆ mask``; ``grown ∩ (mask − dropped) = ∅``.
    """
    shape = mask.shape
    flat = mask.detach().reshape(-1).to("cpu", torch.bool)
    mag = magnitude.detach().reshape(-1).to("cpu")
    score = grow_score.detach().reshape(-1).to("cpu")
    active = flat.nonzero().squeeze(1)  # ascending index: a stable sort keeps lower first
    k = max(0, min(int(k), active.numel()))
    dropped = torch.zeros_like(flat)
    grown = torch.zeros_like(flat)
    if k:
        weakest = torch.sort(mag[active], stable=True).indices[:k]
        dropped[active[weakest]] = True
        candidates = (~(flat & ~dropped)).nonzero().squeeze(1)
        best = torch.sort(score[candidates], descending=True, stable=True).indices[:k]
        grown[candidates[best]] = True
    new = (flat & ~dropped) | grown
    return new.reshape(shape), dropped.reshape(shape), grown.reshape(shape)


@torch.no_grad()
def restart_positions(param: nn.Parameter, optimizer: torch.optim.Optimizer,
                      positions: Tensor) -> None:
    """Set ``param`` and every optimizer-state tensor of its shape to 0 at ``positions``.

    State tensors of another shape (Adam's scalar ``step``) are left alone.
    """
    where = positions.to(param.device)
    param.masked_fill_(where, 0.0)
    for value in optimizer.state.get(param, {}).values():
        if isinstance(value, Tensor) and value.shape == param.shape:
            value.masked_fill_(where.to(value.device), 0)
