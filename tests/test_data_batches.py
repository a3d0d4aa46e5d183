"""epoch_batches: one seeded permutation per epoch, cut into batches."""

from __future__ import annotations

import pytest
import torch

from sparseflow.data import epoch_batches


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("n, bs", [(100, 32), (96, 32), (5, 10), (1, 1)])
def test_covers_every_index_once(n: int, bs: int) -> None:
    batches = epoch_batches(n, bs, gen(0))
    assert sorted(torch.cat(batches).tolist()) == list(range(n))
    sizes = [len(b) for b in batches]
    assert sizes == [bs] * (n // bs) + ([n % bs] if n % bs else [])
    assert all(b.dtype == torch.int64 for b in batches)


def test_drop_last() -> None:
    batches = epoch_batches(100, 32, gen(0), drop_last=True)
    assert [len(b) for b in batches] == [32, 32, 32]
    assert len(set(torch.cat(batches).tolist())) == 96
    assert [len(b) for b in epoch_batches(96, 32, gen(0), drop_last=True)] == [32, 32, 32]
    assert epoch_batches(5, 10, gen(0), drop_last=True) == []


def test_is_the_generators_permutation() -> None:
    expect = torch.randperm(50, generator=gen(7))
    assert torch.equal(torch.cat(epoch_batches(50, 8, gen(7))), expect)


def test_deterministic_and_advancing() -> None:
    a = epoch_batches(64, 16, gen(1))
    b = epoch_batches(64, 16, gen(1))
    assert all(torch.equal(x, y) for x, y in zip(a, b, strict=True))
    g = gen(1)
    e1, e2 = torch.cat(epoch_batches(64, 16, g)), torch.cat(epoch_batches(64, 16, g))
    assert not torch.equal(e1, e2)  # each epoch draws a new order
    assert not torch.equal(torch.cat(a), torch.cat(epoch_batches(64, 16, gen(2))))


def test_empty_and_invalid() -> None:
    assert epoch_batches(0, 4, gen(0)) == []
    with pytest.raises(ValueError, match="batch_size must be"):
        epoch_batches(10, 0, gen(0))
