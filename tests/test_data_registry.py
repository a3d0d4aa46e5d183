"""The data package's public surface: registry entries, load_data options, bundles, search."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import sparseflow.data as data
import sparseflow.data.search as search
from sparseflow.config.schema import DataConfig
from sparseflow.data import DataBundle, Split, dataset_search_dirs, load_data
from sparseflow.errors import ConfigError
from sparseflow.registry import DATASETS


def test_public_names() -> None:
    for name in ["Augmenter", "DataBundle", "Split", "load_data", "epoch_batches", "read_idx",
                 "write_idx", "dataset_search_dirs"]:
        assert name in data.__all__ and hasattr(data, name)


def test_datasets_registered_with_descriptions() -> None:
    for name in ("mnist1d", "digits", "fashion_mnist"):
        assert name in DATASETS
        assert len(DATASETS.describe(name)) > 20
    assert DataConfig().name == "mnist1d"


def test_unknown_dataset_names_the_closest() -> None:
    with pytest.raises(Exception, match="Did you mean 'digits'"):
        DataConfig(name="digit")


def test_num_samples_only_for_mnist1d() -> None:
    with pytest.raises(ConfigError, match="data.num_samples applies only to mnist1d") as err:
        load_data(DataConfig(name="fashion_mnist", num_samples=100))
    assert "'fashion_mnist'" in str(err.value)


def test_augment_off_means_no_augmenter_and_overrides_apply() -> None:
    assert load_data(DataConfig(name="digits")).augmenter is None
    aug = load_data(DataConfig(name="digits", augment=True, aug_pad=3, aug_flip=True)).augmenter
    assert aug is not None and (aug.pad, aug.flip) == (3, True)
    aug = load_data(DataConfig(name="digits", augment=True, aug_pad=0)).augmenter
    assert aug is not None and aug.is_identity


def test_bundle_to_moves_everything() -> None:
    b = load_data(DataConfig(name="digits", augment=True))
    moved = b.to("cpu")
    assert isinstance(moved, DataBundle) and moved is not b
    assert torch.equal(moved.train.x, b.train.x) and torch.equal(moved.test.y, b.test.y)
    assert moved.augmenter is not None and moved.augmenter is not b.augmenter
    assert (moved.name, moved.num_classes, moved.input_shape) == ("digits", 10, (1, 8, 8))


def test_split_length_and_validation() -> None:
    s = Split(torch.zeros(4, 2), torch.zeros(4, dtype=torch.int64))
    assert len(s) == 4
    with pytest.raises(ValueError, match="4 rows but y has 3"):
        Split(torch.zeros(4, 2), torch.zeros(3, dtype=torch.int64))


def test_search_dirs(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(search, "user_data_root", lambda: tmp_path / "user")
    system = search.SYSTEM_DATA_ROOT
    assert dataset_search_dirs("fashion_mnist", str(tmp_path / "r")) == [tmp_path / "r"]
    monkeypatch.delenv("SPARSEFLOW_DATA", raising=False)
    assert dataset_search_dirs("fashion_mnist", None) == [
        tmp_path / "user" / "fashion_mnist", system / "fashion-mnist"]
    monkeypatch.setenv("SPARSEFLOW_DATA", str(tmp_path / "d"))
    d = tmp_path / "d"
    assert dataset_search_dirs("fashion_mnist", None) == [
        d / "fashion_mnist", d / "fashion-mnist", d, tmp_path / "user" / "fashion_mnist",
        system / "fashion-mnist"]
    assert dataset_search_dirs("cifar10", None)[:2] == [d / "cifar10", d]  # no duplicates


def test_default_system_folder_is_debians() -> None:
    debian = search.SYSTEM_DATA_ROOT / "fashion-mnist"
    assert str(debian) == "/usr/share/datasets/fashion-mnist"
