"""Batched augmentation against a slow per-sample oracle using the same random draws."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor

from sparseflow.data import Augmenter


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def oracle_image(x: Tensor, pad: int, flip: bool, fill: Tensor, g: torch.Generator) -> Tensor:
    """Per-sample crop-with-padding and flip; draws in the documented order."""
    b, c, h, w = x.shape
    oy = ox = torch.zeros(b, dtype=torch.long)
    if pad > 0:
        oy = torch.randint(0, 2 * pad + 1, (b,), generator=g)
        ox = torch.randint(0, 2 * pad + 1, (b,), generator=g)
    coins = torch.rand(b, generator=g) < 0.5 if flip else torch.zeros(b, dtype=torch.bool)
    out = torch.empty_like(x)
    for i in range(b):
        canvas = torch.empty(c, h + 2 * pad, w + 2 * pad)
        for ch in range(c):
            canvas[ch] = fill[ch]
        canvas[:, pad:pad + h, pad:pad + w] = x[i]
        crop = canvas[:, oy[i]:oy[i] + h, ox[i]:ox[i] + w]
        out[i] = crop.flip(-1) if coins[i] else crop
    return out


def oracle_sequence(x: Tensor, pad: int, flip: bool, fill: float, g: torch.Generator
                    ) -> Tensor:
    """Per-sample shift of (B, L) rows by s = pad − offset, vacated positions = fill."""
    b, length = x.shape
    offsets = torch.randint(0, 2 * pad + 1, (b,), generator=g) if pad > 0 else torch.zeros(b)
    coins = torch.rand(b, generator=g) < 0.5 if flip else torch.zeros(b, dtype=torch.bool)
    out = torch.full_like(x, fill)
    for i in range(b):
        s = pad - int(offsets[i])
        for j in range(length):
            if 0 <= j - s < length:
                out[i, j] = x[i, j - s]
        if coins[i]:
            out[i] = out[i].flip(0)
    return out


@pytest.mark.parametrize("pad, flip", [(2, True), (2, False), (0, True), (3, True), (1, False)])
def test_image_matches_oracle(pad: int, flip: bool) -> None:
    x = torch.randn(16, 3, 7, 5, generator=gen(0))
    fill = torch.tensor([-1.5, 0.25, 7.0])
    aug = Augmenter(pad=pad, flip=flip, fill=fill, spatial_dims=2)
    got = aug(x, gen(11))
    assert got.shape == x.shape and got.dtype == x.dtype
    assert torch.equal(got, oracle_image(x, pad, flip, fill, gen(11)))


@pytest.mark.parametrize("pad, flip", [(4, False), (3, True), (0, True)])
def test_sequence_matches_oracle(pad: int, flip: bool) -> None:
    x = torch.randn(32, 40, generator=gen(1))
    aug = Augmenter(pad=pad, flip=flip, fill=torch.tensor([-0.5]), spatial_dims=1)
    got = aug(x, gen(5))
    assert got.shape == (32, 40)
    assert torch.equal(got, oracle_sequence(x, pad, flip, -0.5, gen(5)))


def test_sequence_with_channels_matches_per_channel_oracle() -> None:
    x = torch.randn(8, 2, 10, generator=gen(2))
    aug = Augmenter(pad=2, flip=False, fill=torch.tensor([1.0, -1.0]), spatial_dims=1)
    got = aug(x, gen(3))
    # Both channels of a sample shift together: channel c alone with the same draws.
    for c, fill in enumerate([1.0, -1.0]):
        assert torch.equal(got[:, c], oracle_sequence(x[:, c], 2, False, fill, gen(3)))


def test_shift_direction_and_range() -> None:
    # Positive shift s moves content right: out[j] = x[j − s]; every s in [−pad, pad] occurs.
    pad, length = 3, 20
    x = torch.arange(1.0, length + 1).expand(400, length)
    out = Augmenter(pad=pad, flip=False, fill=torch.zeros(1), spatial_dims=1)(x, gen(0))
    shifts = set()
    for row in out:
        nz = row.nonzero().flatten()
        s = int(nz[0]) - int(row[nz[0]] - 1)  # position minus original position
        assert torch.equal(row[nz], x[0, nz - s])
        shifts.add(s)
    assert shifts == set(range(-pad, pad + 1))


def test_identity_when_no_pad_and_no_flip() -> None:
    x = torch.randn(5, 1, 4, 4)
    g = gen(0)
    before = g.get_state()
    aug = Augmenter(pad=0, flip=False, fill=torch.zeros(1), spatial_dims=2)
    assert aug.is_identity and aug(x, g) is x
    assert torch.equal(g.get_state(), before)  # consumed no randomness


def test_flip_never_applied_when_off() -> None:
    # Asymmetric images: every output must be one of the unflipped crops, never a mirror.
    pad = 1
    x = torch.randn(64, 1, 5, 5, generator=gen(4))
    fill = torch.tensor([9.0])
    out = Augmenter(pad=pad, flip=False, fill=fill, spatial_dims=2)(x, gen(8))
    for i in range(64):
        canvas = torch.full((1, 5 + 2 * pad, 5 + 2 * pad), 9.0)
        canvas[:, pad:pad + 5, pad:pad + 5] = x[i]
        crops = [canvas[:, a:a + 5, b:b + 5] for a in range(3) for b in range(3)]
        assert any(torch.equal(out[i], c) for c in crops)
        assert not any(torch.equal(out[i], c.flip(-1)) for c in crops)


def test_flip_only_mirrors_about_half() -> None:
    x = torch.randn(200, 2, 3, 4, generator=gen(5))
    out = Augmenter(pad=0, flip=True, fill=torch.zeros(2), spatial_dims=2)(x, gen(6))
    same = [torch.equal(out[i], x[i]) for i in range(200)]
    mirrored = [torch.equal(out[i], x[i].flip(-1)) for i in range(200)]
    assert all(s != m for s, m in zip(same, mirrored, strict=True))
    assert 70 < sum(mirrored) < 130


def test_padding_uses_per_channel_fill() -> None:
    # Raw content is 100 everywhere; anything else must be that channel's fill value.
    x = torch.full((50, 3, 4, 4), 100.0)
    fill = torch.tensor([-1.0, -2.0, -3.0])
    out = Augmenter(pad=2, flip=True, fill=fill, spatial_dims=2)(x, gen(1))
    for c in range(3):
        values = set(out[:, c].unique().tolist())
        assert values == {100.0, fill[c].item()}


def test_deterministic_and_seed_dependent() -> None:
    x = torch.randn(32, 1, 8, 8, generator=gen(0))
    aug = Augmenter(pad=2, flip=True, fill=torch.zeros(1), spatial_dims=2)
    assert torch.equal(aug(x, gen(1)), aug(x, gen(1)))
    assert not torch.equal(aug(x, gen(1)), aug(x, gen(2)))
    g = gen(1)
    assert not torch.equal(aug(x, g), aug(x, g))  # the generator advances


def test_rejects_wrong_shapes() -> None:
    img = Augmenter(pad=1, flip=False, fill=torch.zeros(1), spatial_dims=2)
    with pytest.raises(ValueError, match=r"expects \(B, C, H, W\)"):
        img(torch.zeros(4, 8), gen(0))
    with pytest.raises(ValueError, match="1 fill values for 3 channels"):
        img(torch.zeros(4, 3, 8, 8), gen(0))
    with pytest.raises(ValueError, match="pad must be"):
        Augmenter(pad=-1, flip=False, fill=torch.zeros(1), spatial_dims=2)


def test_to_keeps_settings() -> None:
    aug = Augmenter(pad=2, flip=True, fill=torch.tensor([0.5]), spatial_dims=2).to("cpu")
    assert (aug.pad, aug.flip, aug.spatial_dims, aug.fill.tolist()) == (2, True, 2, [0.5])
    assert "pad=2" in repr(aug)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_batch_with_cpu_generator_matches_cpu() -> None:
    x = torch.randn(64, 3, 9, 9, generator=gen(0))
    aug = Augmenter(pad=2, flip=True, fill=torch.tensor([-1.0, 0.0, 1.0]), spatial_dims=2)
    cpu = aug(x, gen(3))
    cuda = aug.to("cuda")(x.cuda(), gen(3))
    assert cuda.device.type == "cuda" and torch.equal(cuda.cpu(), cpu)
    seq = Augmenter(pad=4, flip=False, fill=torch.zeros(1), spatial_dims=1)
    xs = torch.randn(64, 40, generator=gen(1))
    assert torch.equal(seq(xs.cuda(), gen(4)).cpu(), seq(xs, gen(4)))
