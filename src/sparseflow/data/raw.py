"""What a dataset loader returns: the raw train/test tensors plus how to treat them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from torch import Tensor

#: ``image``: examples are (C, H, W); ``sequence``: examples are (L,) or (C, L).
Layout = Literal["image", "sequence"]


@dataclass(frozen=True)
class RawData:
    """Raw splits of one dataset as a loader returns them (before validation split/normalizing).

    ``x_*`` are float32 of shape (N, *example_shape), ``y_*`` int64 of shape (N,) with values in
    [0, num_classes). ``aug_pad`` / ``aug_flip`` are the dataset's default augmentation (crop
    padding or maximum shift, and whether a horizontal flip preserves the label). ``source`` says
    where the data came from (a folder, or how it was generated), for the run record.
    """

    x_train: Tensor
    y_train: Tensor
    x_test: Tensor
    y_test: Tensor
    num_classes: int
    layout: Layout
    aug_pad: int
    aug_flip: bool
    source: str

    def __post_init__(self) -> None:
        # Loader bugs, not user errors: a loader must hand back consistent tensors.
        assert len(self.x_train) == len(self.y_train), "train x/y lengths differ"
        assert len(self.x_test) == len(self.y_test), "test x/y lengths differ"
        assert self.x_train.shape[1:] == self.x_test.shape[1:], "train/test example shapes differ"
        assert self.layout in ("image", "sequence"), f"unknown layout {self.layout!r}"
