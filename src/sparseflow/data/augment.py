"""Batched, seeded augmentation: random crop with padding (+ flip) for images, random shift
for 1-D sequences. No per-sample Python: one gather per batch."""

from __future__ import annotations

import torch
from torch import Tensor


class Augmenter:
    """Random crop with padding and optional horizontal flip, applied to a whole batch.

    Images ``x`` (B, C, H, W): each sample is padded by ``pad`` on every side with the
    per-channel ``fill`` value (the normalized value of a raw 0 pixel, so padding reads as
    background), cropped back to H×W at an offset drawn uniformly from [0, 2·pad] per axis,
    then mirrored left-right with probability 0.5 when ``flip`` is on.

    Sequences ``x`` (B, L) or (B, C, L): the same along the last axis, which is a shift by an
    integer in [−pad, pad] with ``fill`` in the vacated positions (offset o ⇔ shift pad − o).

    Random numbers come only from the ``generator`` passed to each call and are drawn on its
    device (normally the CPU), in this order: row offsets (images only; ``randint(0, 2·pad+1,
    (B,))``), column offsets (same), flip coins (``rand(B) < 0.5``). Each draw is skipped when
    it cannot matter (pad = 0, flip off), so pad = 0 with flip off is the identity. Results are
    the same on any device of ``x`` for the same generator state.
    """

    def __init__(self, *, pad: int, flip: bool, fill: Tensor, spatial_dims: int) -> None:
        if pad < 0:
            raise ValueError(f"pad must be ≥ 0, got {pad}")
        if spatial_dims not in (1, 2):
            raise ValueError(f"spatial_dims must be 1 (sequence) or 2 (image), got {spatial_dims}")
        self.pad = int(pad)
        self.flip = bool(flip)
        self.fill = fill.detach().reshape(-1).float()  # (C,)
        self.spatial_dims = spatial_dims

    def __repr__(self) -> str:
        kind = "image" if self.spatial_dims == 2 else "sequence"
        return (f"Augmenter({kind}, pad={self.pad}, flip={self.flip}, "
                f"fill={[round(v, 4) for v in self.fill.tolist()]})")

    @property
    def is_identity(self) -> bool:
        """True when calls return their input unchanged (pad 0, flip off)."""
        return self.pad == 0 and not self.flip

    def to(self, device: torch.device | str) -> Augmenter:
        """The same augmenter with its constants on ``device``."""
        return Augmenter(pad=self.pad, flip=self.flip, fill=self.fill.to(device),
                         spatial_dims=self.spatial_dims)

    def __call__(self, x: Tensor, generator: torch.Generator) -> Tensor:
        """Augment the batch ``x`` with randomness drawn from ``generator``; same shape out."""
        if self.is_identity:
            return x
        if self.spatial_dims == 2:
            if x.ndim != 4:
                raise ValueError(f"image augmenter expects (B, C, H, W), got {tuple(x.shape)}")
            x4 = x
        else:
            if x.ndim not in (2, 3):
                raise ValueError(f"sequence augmenter expects (B, L) or (B, C, L), "
                                 f"got {tuple(x.shape)}")
            # (B, L) → (B, 1, 1, L) and (B, C, L) → (B, C, 1, L): a one-row image.
            x4 = (x.unsqueeze(1) if x.ndim == 2 else x).unsqueeze(2)
        oy, ox, flips = self._draw(x4.shape[0], generator)
        out = self._crop_flip(x4, oy, ox, flips)
        return out.reshape(x.shape)

    def _draw(self, b: int, gen: torch.Generator) -> tuple[Tensor | None, Tensor | None,
                                                            Tensor | None]:
        """Row offsets, column offsets (each (B,) int64 in [0, 2·pad]) and flip coins ((B,)
        bool), or None where not drawn. Drawn on the generator's device."""
        dev = gen.device
        oy = ox = flips = None
        if self.pad > 0:
            if self.spatial_dims == 2:
                oy = torch.randint(0, 2 * self.pad + 1, (b,), generator=gen, device=dev)
            ox = torch.randint(0, 2 * self.pad + 1, (b,), generator=gen, device=dev)
        if self.flip:
            flips = torch.rand(b, generator=gen, device=dev) < 0.5
        return oy, ox, flips

    def _crop_flip(self, x: Tensor, oy: Tensor | None, ox: Tensor | None,
                   flips: Tensor | None) -> Tensor:
        """Crop (and flip) the (B, C, H, W) batch ``x`` at the given offsets with one gather."""
        b, c, h, w = x.shape
        dev = x.device
        ph = self.pad if oy is not None else 0
        pw = self.pad if ox is not None else 0
        fill = self.fill.to(device=dev, dtype=x.dtype)
        if fill.numel() != c:
            raise ValueError(f"augmenter has {fill.numel()} fill values for {c} channels")
        # padded: (B, C, H + 2·ph, W + 2·pw), background everywhere, x in the middle.
        padded = x.new_empty(b, c, h + 2 * ph, w + 2 * pw)
        padded[:] = fill.view(1, c, 1, 1)
        padded[:, :, ph:ph + h, pw:pw + w] = x
        # Source row/column of every output position: rows (B, H), cols (B, W).
        rows = torch.arange(h, device=dev).expand(b, h)
        cols = torch.arange(w, device=dev).expand(b, w)
        if oy is not None:
            rows = rows + oy.to(dev)[:, None]
        if ox is not None:
            cols = cols + ox.to(dev)[:, None]
        if flips is not None:
            # Flip after crop: output column j reads cropped column W − 1 − j.
            cols = torch.where(flips.to(dev)[:, None], cols.flip(1), cols)
        bi = torch.arange(b, device=dev)[:, None, None, None]
        ci = torch.arange(c, device=dev)[None, :, None, None]
        return padded[bi, ci, rows[:, None, :, None], cols[:, None, None, :]]  # (B, C, H, W)
