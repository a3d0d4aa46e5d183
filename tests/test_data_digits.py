"""digits: scikit-learn's bundled 8×8 digits, scaled to [0, 1], fixed stratified split."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits

from sparseflow.config.schema import DataConfig
from sparseflow.data import load_data
from sparseflow.errors import ConfigError


def raw_cfg(**kw: object) -> DataConfig:
    return DataConfig(name="digits", **{"val_fraction": 0.0, "normalize": False, **kw})


def test_shapes_scale_and_classes() -> None:
    b = load_data(raw_cfg())
    assert b.input_shape == (1, 8, 8) and b.num_classes == 10
    assert b.train.x.shape == (1437, 1, 8, 8) and b.test.x.shape == (360, 1, 8, 8)
    assert b.train.x.dtype == torch.float32 and b.train.y.dtype == torch.int64
    assert float(b.train.x.min()) == 0.0 and float(b.train.x.max()) == 1.0
    # Together the splits are exactly sklearn's 1797 images divided by 16.
    x, _ = load_digits(return_X_y=True)
    total = b.train.x.double().sum() + b.test.x.double().sum()
    assert total.item() == pytest.approx(x.sum() / 16.0)
    assert b.source.startswith("sklearn.datasets.load_digits")


def test_split_is_stratified() -> None:
    b = load_data(raw_cfg())
    _, y = load_digits(return_X_y=True)
    per_class = np.bincount(y)
    test_counts = torch.bincount(b.test.y, minlength=10).numpy()
    assert np.all(np.abs(test_counts - 0.2 * per_class) <= 1)


def test_test_set_never_depends_on_config() -> None:
    a = load_data(raw_cfg())
    b = load_data(raw_cfg(split_seed=9, val_fraction=0.3, train_subset=100))
    assert torch.equal(a.test.x, b.test.x) and torch.equal(a.test.y, b.test.y)
    assert len(b.train) == 100 and len(b.val) == round(0.3 * 1437)


def test_default_augmentation_never_flips() -> None:
    aug = load_data(DataConfig(name="digits", augment=True)).augmenter
    assert aug is not None and (aug.pad, aug.flip, aug.spatial_dims) == (1, False, 2)


def test_num_samples_is_refused() -> None:
    with pytest.raises(ConfigError, match="data.num_samples applies only to mnist1d"):
        load_data(DataConfig(name="digits", num_samples=1000))
