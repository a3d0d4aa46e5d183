"""Mini-batches as index draws: one seeded permutation per epoch."""

from __future__ import annotations

import torch
from torch import Tensor


def epoch_batches(n: int, batch_size: int, generator: torch.Generator,
                  drop_last: bool = False) -> list[Tensor]:
    """One epoch's index batches: ``torch.randperm(n, generator=generator)`` cut into
    consecutive chunks of ``batch_size`` (int64 tensors on the generator's device).

    Every index in [0, n) appears exactly once, except that ``drop_last`` drops a final
    incomplete batch. The same generator state gives the same batches.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be ≥ 1, got {batch_size}")
    if n < 0:
        raise ValueError(f"n must be ≥ 0, got {n}")
    perm = torch.randperm(n, generator=generator, device=generator.device)
    batches = list(perm.split(batch_size)) if n > 0 else []
    if drop_last and batches and len(batches[-1]) < batch_size:
        batches.pop()
    return batches
