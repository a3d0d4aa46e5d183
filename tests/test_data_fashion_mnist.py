"""fashion_mnist: search order, reading synthetic IDX files, and one-line errors for every
missing or corrupt file. One test loads the real files when Debian's package is installed."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest
import torch

import sparseflow.data.search as search
from sparseflow.config.schema import DataConfig
from sparseflow.data import load_data, write_idx
from sparseflow.data.fashion_mnist import FILES
from sparseflow.data.idx import encode_idx
from sparseflow.errors import DataError

DEBIAN = Path("/usr/share/datasets/fashion-mnist")


def make_fashion(folder: Path, n_train: int = 30, n_test: int = 12, gz: bool = True,
                 seed: int = 0) -> dict[str, np.ndarray]:
    """Write a small Fashion-MNIST look-alike in the real format; return the arrays."""
    rng = np.random.default_rng(seed)
    arrays = {
        "train_images": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        "train_labels": (np.arange(n_train) % 10).astype(np.uint8),
        "test_images": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        "test_labels": (np.arange(n_test) % 10).astype(np.uint8),
    }
    for key, arr in arrays.items():
        write_idx(folder / (FILES[key] + (".gz" if gz else "")), arr)
    return arrays


@pytest.fixture
def isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No SPARSEFLOW_DATA; the user and system folders are empty ones under tmp_path."""
    monkeypatch.delenv("SPARSEFLOW_DATA", raising=False)
    monkeypatch.setattr(search, "user_data_root", lambda: tmp_path / "user")
    monkeypatch.setattr(search, "SYSTEM_DATA_ROOT", tmp_path / "system")
    return tmp_path


def cfg(root: Path | None = None, **kw: object) -> DataConfig:
    return DataConfig(name="fashion_mnist", root=None if root is None else str(root),
                      val_fraction=0.0, normalize=False, **kw)


@pytest.mark.parametrize("gz", [True, False])
def test_reads_synthetic_files(tmp_path: Path, gz: bool) -> None:
    arrays = make_fashion(tmp_path, gz=gz)
    b = load_data(cfg(tmp_path))
    assert b.input_shape == (1, 28, 28) and b.num_classes == 10
    assert b.train.x.shape == (30, 1, 28, 28) and b.test.x.shape == (12, 1, 28, 28)
    assert b.train.x.dtype == torch.float32 and b.train.y.dtype == torch.int64
    assert b.source == str(tmp_path)
    # val_fraction=0 keeps all rows, in split-permutation order: compare as sets via the index.
    perm = torch.randperm(30, generator=torch.Generator().manual_seed(0))
    expect = torch.from_numpy(arrays["train_images"]).float()[perm] / 255.0
    torch.testing.assert_close(b.train.x[:, 0], expect, rtol=0, atol=0)
    assert torch.equal(b.train.y, torch.from_numpy(arrays["train_labels"]).long()[perm])
    assert torch.equal(b.test.x[:, 0] * 255.0, torch.from_numpy(arrays["test_images"]).float())


def test_search_order(isolated: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = isolated / "data"
    make_fashion(isolated / "system" / "fashion-mnist", seed=1)
    assert load_data(cfg()).source == str(isolated / "system" / "fashion-mnist")
    make_fashion(isolated / "user" / "fashion_mnist", seed=2)
    assert load_data(cfg()).source == str(isolated / "user" / "fashion_mnist")
    monkeypatch.setenv("SPARSEFLOW_DATA", str(data))
    make_fashion(data, seed=3)
    assert load_data(cfg()).source == str(data)
    make_fashion(data / "fashion-mnist", seed=4)
    assert load_data(cfg()).source == str(data / "fashion-mnist")
    make_fashion(data / "fashion_mnist", seed=5)
    assert load_data(cfg()).source == str(data / "fashion_mnist")


def test_root_is_the_only_folder_searched(isolated: Path) -> None:
    make_fashion(isolated / "user" / "fashion_mnist")
    empty = isolated / "empty"
    with pytest.raises(DataError) as err:
        load_data(cfg(empty))
    msg = str(err.value)
    assert f"looked in: {empty})" in msg and "user" not in msg


def test_missing_files_message(isolated: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SPARSEFLOW_DATA", str(isolated / "data"))
    with pytest.raises(DataError) as err:
        load_data(cfg())
    msg = str(err.value)
    assert "\n" not in msg
    assert msg.startswith("Fashion-MNIST not found (looked in: ")
    for folder in [isolated / "data" / "fashion_mnist", isolated / "data" / "fashion-mnist",
                   isolated / "data", isolated / "user" / "fashion_mnist",
                   isolated / "system" / "fashion-mnist"]:
        assert str(folder) in msg
    assert "SPARSEFLOW_DATA" in msg and "apt-get install dataset-fashion-mnist" in msg
    assert msg.endswith("or run `sparseflow data download fashion_mnist`")


def test_partial_folder_names_missing_files(tmp_path: Path) -> None:
    make_fashion(tmp_path)
    (tmp_path / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(DataError, match=r"has 3 of 4; missing t10k-labels-idx1-ubyte\)"):
        load_data(cfg(tmp_path))


def _corrupt(folder: Path, case: str) -> str:
    """Break one file of a valid folder; return the file name the error must name."""
    imgs, labels = folder / "train-images-idx3-ubyte.gz", folder / "train-labels-idx1-ubyte.gz"
    if case == "bad gzip":
        imgs.write_bytes(b"\x1f\x8b garbage")
        return imgs.name
    if case == "wrong magic":
        imgs.write_bytes(gzip.compress(b"\x50\x4b\x03\x04" + b"\x00" * 100))
        return imgs.name
    if case == "wrong dtype":
        write_idx(imgs, np.zeros((30, 28, 28), dtype=np.float32))
        return imgs.name
    if case == "unknown dtype":
        imgs.write_bytes(gzip.compress(bytes([0, 0, 0x01, 3]) + b"\x00" * 12))
        return imgs.name
    if case == "truncated":
        raw = encode_idx(np.zeros((30, 28, 28), dtype=np.uint8))
        imgs.write_bytes(gzip.compress(raw[:-1]))
        return imgs.name
    if case == "labels as images":
        write_idx(labels, np.zeros((30, 28, 28), dtype=np.uint8))
        return labels.name
    if case == "image size":
        write_idx(imgs, np.zeros((30, 27, 27), dtype=np.uint8))
        return imgs.name
    if case == "count mismatch":
        write_idx(labels, np.zeros(29, dtype=np.uint8))
        return labels.name
    if case == "label range":
        write_idx(labels, np.array([0] * 29 + [10], dtype=np.uint8))
        return labels.name
    raise AssertionError(case)


@pytest.mark.parametrize("case, problem", [
    ("bad gzip", "not a valid gzip file"),
    ("wrong magic", "wrong magic number 0x504B0304"),
    ("wrong dtype", "wrong dtype code 0x0D (float32); expected uint8"),
    ("unknown dtype", "unknown dtype code 0x01"),
    ("truncated", "truncated data"),
    ("labels as images", "3-D data"),
    ("image size", "images are 27×27, expected 28×28"),
    ("count mismatch", "29 labels but train-images-idx3-ubyte.gz holds 30 images"),
    ("label range", "label out of range: 10 at index 29"),
])
def test_corrupt_files_are_one_line_errors(tmp_path: Path, case: str, problem: str) -> None:
    make_fashion(tmp_path)
    name = _corrupt(tmp_path, case)
    with pytest.raises(DataError) as err:
        load_data(cfg(tmp_path))
    msg = str(err.value)
    assert "\n" not in msg and err.value.__cause__ is None
    assert str(tmp_path / name) in msg
    assert problem in msg, msg


def test_default_augmentation_crops_and_flips(tmp_path: Path) -> None:
    make_fashion(tmp_path)
    aug = load_data(cfg(tmp_path, augment=True)).augmenter
    assert aug is not None and (aug.pad, aug.flip, aug.spatial_dims) == (2, True, 2)


@pytest.mark.skipif(not DEBIAN.is_dir(), reason=f"Debian's dataset-fashion-mnist is not "
                    f"installed ({DEBIAN} missing); `apt-get install dataset-fashion-mnist`")
def test_real_debian_files(isolated: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(search, "SYSTEM_DATA_ROOT", DEBIAN.parent)  # the real search path
    b = load_data(cfg())
    assert b.source == str(DEBIAN)
    assert b.train.x.shape == (60000, 1, 28, 28) and b.test.x.shape == (10000, 1, 28, 28)
    assert b.train.x.dtype == torch.float32 and b.train.y.dtype == torch.int64
    assert float(b.train.x.min()) >= 0.0 and float(b.train.x.max()) == 1.0
    for y in (b.train.y, b.test.y):
        assert int(y.min()) == 0 and int(y.max()) == 9
    # Fashion-MNIST is balanced: 6000 training and 1000 test images per class.
    assert torch.bincount(b.train.y).tolist() == [6000] * 10
    assert torch.bincount(b.test.y).tolist() == [1000] * 10
