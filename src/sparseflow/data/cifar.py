"""cifar10, cifar100: CIFAR from the standard python-pickle batch folders in a local folder.

CIFAR-10 (``cifar-10-batches-py``): ``data_batch_1`` … ``data_batch_5`` (10,000 images each),
``test_batch`` (10,000) and ``batches.meta``. CIFAR-100 (``cifar-100-python``): ``train``
(50,000), ``test`` (10,000) and ``meta``; its 100 fine labels are used. Each batch is a dict
with ``data``, a uint8 array (N, 3072) whose rows are the red, green and blue 32×32 planes in
row-major order, and a list of N integer labels. Batches are read with the restricted
unpickler of :mod:`sparseflow.data.pickle_safe`: a file that tries to load anything but a
numpy array is refused before it runs.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from sparseflow.config.schema import DataConfig
from sparseflow.data.pickle_safe import dumps_py2, load_restricted
from sparseflow.data.raw import RawData
from sparseflow.data.search import dataset_search_dirs
from sparseflow.errors import DataError
from sparseflow.registry import DATASETS
from sparseflow.utils.atomic import atomic_write_bytes

#: Default augmentation: crop padding 4 pixels and horizontal flip (the standard CIFAR recipe).
AUG_PAD, AUG_FLIP = 4, True
IMAGE_SHAPE = (3, 32, 32)
ROW = 3 * 32 * 32  # values per image row of ``data``: R plane, G plane, B plane
CIFAR10_NAMES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse",
                 "ship", "truck"]


@dataclass(frozen=True)
class CifarLayout:
    """The files and keys of one CIFAR variant's batch folder."""

    name: str  #: registry name
    title: str  #: for messages
    folder: str  #: the batch folder the official archive extracts to
    archive: str  #: the official archive's file name
    train: tuple[str, ...]  #: training batch files, in order
    test: str
    meta: str
    label_key: str  #: key of the labels in a batch
    names_key: str  #: key of the class names in the meta file
    num_classes: int

    @property
    def files(self) -> list[str]:
        """Every file the folder must hold."""
        return [*self.train, self.test, self.meta]


CIFAR10 = CifarLayout(
    name="cifar10", title="CIFAR-10", folder="cifar-10-batches-py",
    archive="cifar-10-python.tar.gz", train=tuple(f"data_batch_{i}" for i in range(1, 6)),
    test="test_batch", meta="batches.meta", label_key="labels", names_key="label_names",
    num_classes=10)
CIFAR100 = CifarLayout(
    name="cifar100", title="CIFAR-100", folder="cifar-100-python",
    archive="cifar-100-python.tar.gz", train=("train",), test="test", meta="meta",
    label_key="fine_labels", names_key="fine_label_names", num_classes=100)
LAYOUTS: dict[str, CifarLayout] = {"cifar10": CIFAR10, "cifar100": CIFAR100}


def _check_folder(folder: Path, layout: CifarLayout) -> str | None:
    """None if ``folder`` holds every file of ``layout``; else what it lacks ("" if all)."""
    present = [f for f in layout.files if (folder / f).is_file()]
    if len(present) == len(layout.files):
        return None
    if not present:
        return ""
    missing = [f for f in layout.files if f not in present]
    return f"has {len(present)} of {len(layout.files)}; missing {', '.join(missing)}"


def locate_cifar(layout: CifarLayout, root: str | None) -> Path:
    """The first candidate folder holding every file of ``layout``; one-line DataError if none.

    The message names each folder looked in (and what a partial folder lacks) and the fix.
    """
    looked: list[str] = []
    for base in dataset_search_dirs(layout.name, root):
        notes: list[str] = []
        for folder in (base / layout.folder, base):
            lack = _check_folder(folder, layout)
            if lack is None:
                return folder
            if lack:
                notes.append(f"{folder} ({lack})")
        # An empty subfolder is implied by its parent's entry: "looked in each folder and its
        # <batch folder> subfolder".
        looked += notes or [str(base)]
    raise DataError(
        f"{layout.title} not found (looked in each folder and its {layout.folder} subfolder: "
        f"{'; '.join(looked)}); put the {layout.folder} folder extracted from {layout.archive} "
        f"in one of them, set SPARSEFLOW_DATA to the folder holding it, or run "
        f"`sparseflow data download {layout.name}`")


def _refetch(layout: CifarLayout) -> str:
    """The fix for a damaged or foreign file of ``layout``."""
    return (f"re-extract the {layout.folder} folder from {layout.archive} or run "
            f"`sparseflow data download {layout.name}`")


def _entry(batch: Any, key: str, path: Path, layout: CifarLayout) -> Any:
    """``batch[key]``, whether the file was written with Python-2 (bytes) or str keys."""
    if not isinstance(batch, dict):
        raise DataError(f"{path}: holds a {type(batch).__name__}, expected a dict (a CIFAR "
                        f"batch is a pickled dict); {_refetch(layout)}")
    for k in (key.encode(), key):
        if k in batch:
            return batch[k]
    keys = ", ".join(sorted(k.decode("latin1") if isinstance(k, bytes) else str(k)
                            for k in batch))
    has = f"it has: {keys}" if keys else "it has no entries"
    raise DataError(f"{path}: no {key!r} entry ({has}), so it is not the published file; "
                    f"{_refetch(layout)}")


def read_batch(path: Path, layout: CifarLayout) -> tuple[np.ndarray, np.ndarray]:
    """One batch file: (data uint8 (N, 3072), labels int64 (N,)), checked."""
    batch = load_restricted(path, f"a {layout.title} batch")
    data = _entry(batch, "data", path, layout)
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 \
            or data.shape[1] != ROW:
        desc = (f"{data.dtype} array of shape {data.shape}" if isinstance(data, np.ndarray)
                else type(data).__name__)
        raise DataError(f"{path}: data is a {desc}, expected a uint8 array of shape "
                        f"(N, {ROW}) (N images of 3×32×32); {_refetch(layout)}")
    labels = np.asarray(_entry(batch, layout.label_key, path, layout))
    if labels.ndim != 1 or not (np.issubdtype(labels.dtype, np.integer) or labels.size == 0):
        raise DataError(f"{path}: {layout.label_key} must be a list of integers, got "
                        f"{labels.dtype} of shape {labels.shape}; {_refetch(layout)}")
    if len(labels) != len(data):
        raise DataError(f"{path}: {len(labels)} labels but {len(data)} images; "
                        f"{_refetch(layout)}")
    bad = (labels < 0) | (labels >= layout.num_classes)
    if bad.any():
        i = int(np.argmax(bad))
        raise DataError(f"{path}: label out of range: {int(labels[i])} at index {i} "
                        f"(labels must be in 0..{layout.num_classes - 1}); {_refetch(layout)}")
    return data, labels.astype(np.int64)


def read_meta(path: Path, layout: CifarLayout) -> list[str]:
    """The class names of the meta file, checked to number ``layout.num_classes``."""
    names = _entry(load_restricted(path, f"a {layout.title} meta file"), layout.names_key,
                   path, layout)
    if not isinstance(names, list) or len(names) != layout.num_classes:
        count = len(names) if isinstance(names, list) else type(names).__name__
        raise DataError(f"{path}: {layout.names_key} has {count} class names, expected "
                        f"{layout.num_classes}; {_refetch(layout)}")
    return [n.decode("latin1") if isinstance(n, bytes) else str(n) for n in names]


def _images(data: np.ndarray) -> torch.Tensor:
    """uint8 (N, 3072) → float32 (N, 3, 32, 32) in [0, 1], one vectorized pass."""
    return torch.from_numpy(data).reshape(-1, *IMAGE_SHAPE).to(torch.float32).div_(255.0)


def load_cifar(layout: CifarLayout, root: str | None) -> RawData:
    """Locate, read and check one CIFAR variant (see :func:`locate_cifar` for the search)."""
    folder = locate_cifar(layout, root)
    read_meta(folder / layout.meta, layout)
    parts = [read_batch(folder / f, layout) for f in layout.train]
    x_te, y_te = read_batch(folder / layout.test, layout)
    x_tr = np.concatenate([p[0] for p in parts])
    y_tr = np.concatenate([p[1] for p in parts])
    return RawData(
        x_train=_images(x_tr), y_train=torch.from_numpy(y_tr),
        x_test=_images(x_te), y_test=torch.from_numpy(y_te), num_classes=layout.num_classes,
        layout="image", aug_pad=AUG_PAD, aug_flip=AUG_FLIP, source=str(folder),
    )


@DATASETS.register("cifar10", aug_pad=AUG_PAD, aug_flip=AUG_FLIP)
def load_cifar10(cfg: DataConfig) -> RawData:
    """CIFAR-10: 60k color 32×32 images of 10 object classes (local python batches)."""
    return load_cifar(CIFAR10, cfg.root)


@DATASETS.register("cifar100", aug_pad=AUG_PAD, aug_flip=AUG_FLIP)
def load_cifar100(cfg: DataConfig) -> RawData:
    """CIFAR-100: 60k color 32×32 images of 100 fine classes (local python batches)."""
    return load_cifar(CIFAR100, cfg.root)


def write_cifar(folder: str | Path, dataset: str = "cifar10", *, n_train: int = 20,
                n_test: int = 10, seed: int = 0) -> dict[str, np.ndarray]:
    """Write a small random CIFAR look-alike in the real format under ``folder``.

    Files go to ``folder/<batch folder>`` (``cifar-10-batches-py`` or ``cifar-100-python``),
    pickled exactly as the originals (Python-2 protocol 2, bytes keys); CIFAR-10's ``n_train``
    images are spread over its five batches. Labels cycle through the classes. Returns the
    arrays written: ``x_train``/``x_test`` uint8 (N, 3072), ``y_train``/``y_test`` int64.
    """
    layout = LAYOUTS[dataset]
    out = Path(folder) / layout.folder
    rng = np.random.default_rng(seed)
    arrays = {
        "x_train": rng.integers(0, 256, (n_train, ROW), dtype=np.uint8),
        "y_train": np.arange(n_train, dtype=np.int64) % layout.num_classes,
        "x_test": rng.integers(0, 256, (n_test, ROW), dtype=np.uint8),
        "y_test": np.arange(n_test, dtype=np.int64) % layout.num_classes,
    }
    splits = np.array_split(np.arange(n_train), len(layout.train))
    batches = []
    for k, (fname, idx) in enumerate(zip(layout.train, splits, strict=True)):
        batches.append((fname, arrays["x_train"][idx], arrays["y_train"][idx],
                        f"training batch {k + 1} of {len(layout.train)}"))
    batches.append((layout.test, arrays["x_test"], arrays["y_test"], "testing batch 1 of 1"))
    for fname, x, y, label in batches:
        batch: dict[bytes, Any] = {b"batch_label": label.encode(),
                                   layout.label_key.encode(): [int(v) for v in y],
                                   b"data": x,
                                   b"filenames": [f"img_{j:05d}.png".encode()
                                                  for j in range(len(x))]}
        if layout is CIFAR100:  # 20 superclasses of 5 fine classes each
            batch[b"coarse_labels"] = [int(v) // 5 for v in y]
        atomic_write_bytes(out / fname, dumps_py2(batch))
    if layout is CIFAR10:
        meta: dict[bytes, Any] = {b"num_cases_per_batch": len(splits[0]), b"num_vis": ROW,
                                  b"label_names": [n.encode() for n in CIFAR10_NAMES]}
    else:
        meta = {b"fine_label_names": [f"class_{i:02d}".encode() for i in range(100)],
                b"coarse_label_names": [f"superclass_{i:02d}".encode() for i in range(20)]}
    atomic_write_bytes(out / layout.meta, dumps_py2(meta))
    return arrays
