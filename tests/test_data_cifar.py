"""cifar10/cifar100: reading the python-pickle batches (written as Python 2 wrote them), search
order, and one-line errors for every missing or malformed file."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

import sparseflow.data.search as search
from sparseflow.config.schema import DataConfig
from sparseflow.data import load_data, write_cifar
from sparseflow.data.cifar import CIFAR10, CIFAR100, LAYOUTS
from sparseflow.data.pickle_safe import dumps_py2
from sparseflow.errors import DataError


@pytest.fixture
def isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No SPARSEFLOW_DATA; the user and system folders are empty ones under tmp_path."""
    monkeypatch.delenv("SPARSEFLOW_DATA", raising=False)
    monkeypatch.setattr(search, "user_data_root", lambda: tmp_path / "user")
    monkeypatch.setattr(search, "SYSTEM_DATA_ROOT", tmp_path / "system")
    return tmp_path


def cfg(name: str = "cifar10", root: Path | None = None, **kw: object) -> DataConfig:
    return DataConfig(name=name, root=None if root is None else str(root), val_fraction=0.0,
                      normalize=False, **kw)


@pytest.mark.parametrize("name", ["cifar10", "cifar100"])
def test_reads_synthetic_batches(tmp_path: Path, name: str) -> None:
    arrays = write_cifar(tmp_path, name, n_train=23, n_test=10)
    b = load_data(cfg(name, tmp_path))
    layout = LAYOUTS[name]
    assert b.source == str(tmp_path / layout.folder)
    assert b.input_shape == (3, 32, 32) and b.num_classes == layout.num_classes
    assert b.train.x.shape == (23, 3, 32, 32) and b.test.x.shape == (10, 3, 32, 32)
    assert b.train.x.dtype == torch.float32 and b.train.y.dtype == torch.int64
    # val_fraction=0 keeps every row, in the split permutation's order.
    perm = torch.randperm(23, generator=torch.Generator().manual_seed(0))
    expect = torch.from_numpy(arrays["x_train"]).reshape(-1, 3, 32, 32).float() / 255.0
    assert torch.equal(b.train.x, expect[perm])
    assert torch.equal(b.train.y, torch.from_numpy(arrays["y_train"])[perm])
    assert torch.equal(b.test.y, torch.from_numpy(arrays["y_test"]))
    assert float(b.train.x.min()) >= 0.0 and float(b.train.x.max()) <= 1.0


def test_row_layout_is_rgb_planes_row_major(tmp_path: Path) -> None:
    write_cifar(tmp_path, n_train=5, n_test=1)
    # One test image: red plane 0..., green constant 128, blue constant 255; pixel (0, 1) of
    # the red plane is value 7 and (1, 0) is 9, so rows are 32 values long.
    row = np.zeros(3072, dtype=np.uint8)
    row[1024:2048], row[2048:] = 128, 255
    row[1], row[32] = 7, 9
    path = tmp_path / "cifar-10-batches-py" / "test_batch"
    path.write_bytes(dumps_py2({b"data": row[None], b"labels": [3], b"batch_label": b"t"}))
    x = load_data(cfg(root=tmp_path)).test.x[0]
    assert x.shape == (3, 32, 32)
    back = torch.round(x * 255).to(torch.uint8)  # exact: every value is k/255 in float32
    assert int(back[0, 0, 1]) == 7 and int(back[0, 1, 0]) == 9 and int(back[0].sum()) == 16
    assert torch.all(back[1] == 128) and torch.all(back[2] == 255)


def test_cifar10_train_spread_over_five_batches(tmp_path: Path) -> None:
    write_cifar(tmp_path, n_train=12)
    folder = tmp_path / "cifar-10-batches-py"
    sizes = [len(pickle.loads((folder / f).read_bytes(), encoding="bytes")[b"labels"])
             for f in CIFAR10.train]
    assert sizes == [3, 3, 2, 2, 2]
    assert sorted(p.name for p in folder.iterdir()) == sorted(CIFAR10.files)


def test_normalization_and_augmentation_defaults(tmp_path: Path) -> None:
    write_cifar(tmp_path, n_train=40)
    b = load_data(DataConfig(name="cifar10", root=str(tmp_path), val_fraction=0.25,
                             augment=True))
    means = b.train.x.mean(dim=(0, 2, 3))
    stds = b.train.x.std(dim=(0, 2, 3), unbiased=False)
    torch.testing.assert_close(means, torch.zeros(3), atol=1e-5, rtol=0)
    torch.testing.assert_close(stds, torch.ones(3), atol=1e-4, rtol=0)
    aug = b.augmenter
    assert aug is not None and (aug.pad, aug.flip, aug.spatial_dims) == (4, True, 2)


def test_search_order(isolated: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = isolated / "data"
    write_cifar(isolated / "system" / "cifar10", seed=1)
    assert load_data(cfg()).source == str(isolated / "system/cifar10/cifar-10-batches-py")
    write_cifar(isolated / "user" / "cifar10", seed=2)
    assert load_data(cfg()).source == str(isolated / "user/cifar10/cifar-10-batches-py")
    monkeypatch.setenv("SPARSEFLOW_DATA", str(data))
    write_cifar(data, seed=3)  # $SPARSEFLOW_DATA/cifar-10-batches-py
    assert load_data(cfg()).source == str(data / "cifar-10-batches-py")
    write_cifar(data / "cifar10", seed=4)
    assert load_data(cfg()).source == str(data / "cifar10/cifar-10-batches-py")


def test_root_may_be_the_batch_folder_itself(isolated: Path) -> None:
    write_cifar(isolated / "x")
    folder = isolated / "x" / "cifar-10-batches-py"
    assert load_data(cfg(root=folder)).source == str(folder)
    assert load_data(cfg(root=isolated / "x")).source == str(folder)


def test_missing_files_message(isolated: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SPARSEFLOW_DATA", str(isolated / "data"))
    with pytest.raises(DataError) as err:
        load_data(cfg("cifar100"))
    msg = str(err.value)
    assert "\n" not in msg
    assert msg.startswith("CIFAR-100 not found (looked in each folder and its cifar-100-python "
                          "subfolder: ")
    for folder in [isolated / "data" / "cifar100", isolated / "data",
                   isolated / "user" / "cifar100", isolated / "system" / "cifar100"]:
        assert f"{folder};" in msg or f"{folder})" in msg
    assert "cifar-100-python.tar.gz" in msg and "SPARSEFLOW_DATA" in msg
    assert msg.endswith("or run `sparseflow data download cifar100`")


def test_partial_folder_names_missing_files(tmp_path: Path) -> None:
    write_cifar(tmp_path)
    (tmp_path / "cifar-10-batches-py" / "data_batch_3").unlink()
    (tmp_path / "cifar-10-batches-py" / "batches.meta").unlink()
    with pytest.raises(DataError, match=r"cifar-10-batches-py \(has 5 of 7; missing "
                       r"data_batch_3, batches.meta\)"):
        load_data(cfg(root=tmp_path))


def _batch(n: int = 2, **over: object) -> dict[bytes, object]:
    batch: dict[bytes, object] = {b"data": np.zeros((n, 3072), np.uint8),
                                  b"labels": list(range(n)), b"batch_label": b"b"}
    batch.update({k.encode(): v for k, v in over.items()})
    return {k: v for k, v in batch.items() if v is not None}


@pytest.mark.parametrize("file, content, problem", [
    ("data_batch_2", b"\x80\x02}(U\x04data", "not a valid pickle of a CIFAR-10 batch"),
    ("data_batch_2", b"PK\x03\x04 zip?", "not a valid pickle of a CIFAR-10 batch"),
    ("test_batch", dumps_py2([1, 2]), "holds a list, expected a dict"),  # type: ignore[arg-type]
    ("test_batch", _batch(data=None), "no 'data' entry (it has: batch_label, labels)"),
    ("test_batch", _batch(labels=None), "no 'labels' entry"),
    ("data_batch_1", _batch(data=[1, 2]), "data is a list, expected a uint8 array"),
    ("data_batch_1", _batch(data=np.zeros((2, 3, 32, 32), np.uint8)),
     "data is a uint8 array of shape (2, 3, 32, 32), expected a uint8 array of shape (N, 3072)"),
    ("data_batch_1", _batch(data=np.zeros((2, 3071), np.uint8)), "shape (2, 3071)"),
    ("data_batch_5", _batch(labels=[b"a", b"b"]), "labels must be a list of integers"),
    ("data_batch_5", _batch(labels=[0, 1, 2]), "3 labels but 2 images"),
    ("data_batch_5", _batch(labels=[0, 10]), "label out of range: 10 at index 1 (labels must "
                                             "be in 0..9)"),
    ("test_batch", _batch(labels=[-1, 0]), "label out of range: -1 at index 0"),
    ("batches.meta", {b"label_names": [b"a"] * 9}, "label_names has 9 class names, expected 10"),
])
def test_malformed_files_are_one_line_errors(tmp_path: Path, file: str, content: object,
                                             problem: str) -> None:
    write_cifar(tmp_path)
    path = tmp_path / "cifar-10-batches-py" / file
    path.write_bytes(content if isinstance(content, bytes) else dumps_py2(content))
    with pytest.raises(DataError) as err:
        load_data(cfg(root=tmp_path))
    msg = str(err.value)
    assert "\n" not in msg and err.value.__cause__ is None
    assert msg.startswith(f"{path}: ") and problem in msg, msg


def test_float_data_is_refused(tmp_path: Path) -> None:
    # dumps_py2 writes uint8 only (as the originals); a re-saved float copy comes via pickle.
    write_cifar(tmp_path)
    path = tmp_path / "cifar-10-batches-py" / "data_batch_1"
    path.write_bytes(pickle.dumps({b"data": np.zeros((2, 3072)), b"labels": [0, 1]},
                                  protocol=2))
    with pytest.raises(DataError, match="data is a float64 array of shape"):
        load_data(cfg(root=tmp_path))


def test_cifar100_uses_fine_labels(tmp_path: Path) -> None:
    arrays = write_cifar(tmp_path, "cifar100", n_train=250, n_test=100)
    b = load_data(cfg("cifar100", tmp_path))
    assert int(b.train.y.max()) == 99 and torch.equal(b.test.y,
                                                     torch.from_numpy(arrays["y_test"]))
    coarse = pickle.loads((tmp_path / CIFAR100.folder / "test").read_bytes(),
                          encoding="bytes")[b"coarse_labels"]
    assert max(coarse) == 19  # present in the file, not used
