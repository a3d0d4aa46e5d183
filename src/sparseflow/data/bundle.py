"""In-memory datasets: a :class:`Split` is (x, y) tensors; a :class:`DataBundle` holds all three."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

if TYPE_CHECKING:
    from sparseflow.data.augment import Augmenter


@dataclass(frozen=True)
class Split:
    """One split held in memory: x float32 (N, *input_shape), y int64 (N,)."""

    x: Tensor
    y: Tensor

    def __post_init__(self) -> None:
        if len(self.x) != len(self.y):
            raise ValueError(f"Split x has {len(self.x)} rows but y has {len(self.y)}")

    def __len__(self) -> int:
        return int(self.x.shape[0])

    def to(self, device: torch.device | str) -> Split:
        """The same split with both tensors on ``device``."""
        return Split(self.x.to(device), self.y.to(device))


@dataclass
class DataBundle:
    """A dataset ready for training: train/val/test splits (normalized), and its metadata.

    ``val`` has 0 rows when ``val_fraction`` is 0. ``input_shape`` is the per-example shape,
    e.g. (40,) for mnist1d or (1, 28, 28) for Fashion-MNIST. ``augmenter`` is None unless the
    config asks for augmentation; the trainer applies it to training batches only. ``stats``
    records the normalization: ``{"normalized": bool, "mean": [per channel], "std": [...]}``.
    """

    name: str
    train: Split
    val: Split
    test: Split
    num_classes: int
    input_shape: tuple[int, ...]
    augmenter: Augmenter | None = None
    source: str = ""
    stats: dict[str, Any] = field(default_factory=dict)

    def to(self, device: torch.device | str) -> DataBundle:
        """A bundle with every tensor (splits and augmenter constants) on ``device``."""
        aug = self.augmenter.to(device) if self.augmenter is not None else None
        return replace(self, train=self.train.to(device), val=self.val.to(device),
                       test=self.test.to(device), augmenter=aug)
