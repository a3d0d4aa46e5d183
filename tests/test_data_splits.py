"""Validation split, training subset and normalization, alone and inside load_data."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sparseflow.config.schema import DataConfig
from sparseflow.data import load_data
from sparseflow.data.digits import digits_arrays
from sparseflow.data.splits import MIN_STD, channel_stats, normalize, split_indices
from sparseflow.errors import DataError


@pytest.mark.parametrize("n, frac", [(100, 0.1), (1437, 0.25), (25, 0.1), (7, 0.5), (10, 0.0)])
def test_split_sizes_disjoint_and_complete(n: int, frac: float) -> None:
    train, val = split_indices(n, frac, split_seed=3)
    assert len(val) == round(frac * n) and len(train) == n - len(val)
    assert torch.cat([train, val]).sort().values.tolist() == list(range(n))


def test_split_is_deterministic_per_seed() -> None:
    a = split_indices(200, 0.2, split_seed=1)
    b = split_indices(200, 0.2, split_seed=1)
    c = split_indices(200, 0.2, split_seed=2)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(a[1], c[1])


def test_split_ignores_the_global_rng() -> None:
    torch.manual_seed(0)
    a = split_indices(200, 0.2, split_seed=1)
    torch.manual_seed(99)
    b = split_indices(200, 0.2, split_seed=1)
    assert torch.equal(a[1], b[1])


def test_subset_keeps_the_first_k_and_the_same_val() -> None:
    full_train, full_val = split_indices(200, 0.2, split_seed=4)
    train, val = split_indices(200, 0.2, split_seed=4, train_subset=30)
    assert torch.equal(val, full_val) and torch.equal(train, full_train[:30])


def test_subset_too_large_is_one_line_error() -> None:
    with pytest.raises(DataError, match="train_subset=181 exceeds the 180 training") as err:
        split_indices(200, 0.1, split_seed=0, train_subset=181)
    assert "\n" not in str(err.value)


def test_nothing_left_to_train_on() -> None:
    with pytest.raises(DataError, match="no training examples left"):
        split_indices(1, 0.9, split_seed=0)


def test_load_data_uses_these_indices() -> None:
    x_tr, y_tr, _, _ = digits_arrays()
    b = load_data(DataConfig(name="digits", val_fraction=0.2, split_seed=5, train_subset=300,
                             normalize=False))
    train, val = split_indices(len(x_tr), 0.2, 5, 300)
    assert torch.equal(b.train.x, torch.from_numpy(x_tr)[train])
    assert torch.equal(b.train.y, torch.from_numpy(y_tr)[train])
    assert torch.equal(b.val.x, torch.from_numpy(x_tr)[val])
    assert len(b.train) == 300 and len(b.val) == round(0.2 * len(x_tr))


def test_empty_validation_split() -> None:
    b = load_data(DataConfig(name="digits", val_fraction=0.0))
    assert len(b.val) == 0 and b.val.x.shape == (0, 1, 8, 8) and b.val.y.dtype == torch.int64


def test_channel_stats_match_numpy_per_channel() -> None:
    g = torch.Generator().manual_seed(0)
    scale = torch.tensor([1.0, 5.0, 0.1]).view(1, 3, 1, 1)
    shift = torch.tensor([2.0, -3.0, 0.5]).view(1, 3, 1, 1)
    x = torch.randn(50, 3, 4, 6, generator=g) * scale + shift
    mean, std = channel_stats(x)
    xn = x.numpy().astype(np.float64)
    np.testing.assert_allclose(mean.numpy(), xn.mean(axis=(0, 2, 3)), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(std.numpy(), xn.std(axis=(0, 2, 3)), rtol=1e-5)
    z = normalize(x, mean, std)
    torch.testing.assert_close(z.mean(dim=(0, 2, 3)), torch.zeros(3), atol=1e-5, rtol=0)
    torch.testing.assert_close(z.std(dim=(0, 2, 3), correction=0), torch.ones(3), atol=1e-5,
                               rtol=0)


def test_sequences_are_one_channel() -> None:
    x = torch.arange(12.0).reshape(3, 4)
    mean, std = channel_stats(x)
    assert mean.shape == (1,) and mean.item() == pytest.approx(5.5)
    assert std.item() == pytest.approx(float(np.std(np.arange(12.0))))


def test_constant_channel_std_is_clamped() -> None:
    x = torch.zeros(10, 2, 3, 3)
    x[:, 1] = 1.0
    mean, std = channel_stats(x)
    assert std.tolist() == [pytest.approx(MIN_STD)] * 2
    assert torch.isfinite(normalize(x, mean, std)).all()


def test_normalization_uses_train_statistics_only() -> None:
    x_tr, _, x_te, _ = digits_arrays()
    c = DataConfig(name="digits", val_fraction=0.2, split_seed=1, train_subset=50)
    b = load_data(c)
    train, val = split_indices(len(x_tr), 0.2, 1, 50)
    raw_train = torch.from_numpy(x_tr)[train]
    mean, std = raw_train.double().mean().item(), raw_train.double().std(correction=0).item()
    assert b.stats["normalized"] is True
    assert b.stats["mean"] == [pytest.approx(mean, abs=1e-6)]
    assert b.stats["std"] == [pytest.approx(std, rel=1e-5)]
    # Not the statistics of the whole raw training split (50 of 1437 differ clearly).
    assert abs(float(x_tr.mean()) - mean) > 1e-3
    # Train is standardized; val and test got the same affine map.
    assert b.train.x.mean().item() == pytest.approx(0.0, abs=1e-5)
    assert b.train.x.std(correction=0).item() == pytest.approx(1.0, abs=1e-5)
    torch.testing.assert_close(b.test.x, (torch.from_numpy(x_te) - mean) / std)
    torch.testing.assert_close(b.val.x, (torch.from_numpy(x_tr)[val] - mean) / std)


def test_no_normalization_records_identity_stats() -> None:
    b = load_data(DataConfig(name="digits", normalize=False, augment=True))
    assert b.stats == {"normalized": False, "mean": [0.0], "std": [1.0]}
    assert b.augmenter is not None and b.augmenter.fill.tolist() == [0.0]


def test_augmenter_fill_is_normalized_raw_zero() -> None:
    b = load_data(DataConfig(name="digits", augment=True))
    assert b.augmenter is not None
    expect = -b.stats["mean"][0] / b.stats["std"][0]
    assert b.augmenter.fill.tolist() == [pytest.approx(expect, rel=1e-6)]
    # Raw 0 is the darkest pixel, so the padding equals the background of real images.
    assert b.train.x.min().item() == pytest.approx(expect, rel=1e-6)
