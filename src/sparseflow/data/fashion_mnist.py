"""fashion_mnist: Zalando's Fashion-MNIST from the standard IDX files in a local folder."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from sparseflow.config.schema import DataConfig
from sparseflow.data.idx import read_idx
from sparseflow.data.raw import RawData
from sparseflow.data.search import locate_files
from sparseflow.errors import DataError
from sparseflow.registry import DATASETS

#: Default augmentation: crop padding 2 pixels, horizontal flip on (garments are symmetric).
AUG_PAD, AUG_FLIP = 2, True
NUM_CLASSES = 10
IMAGE_HW = (28, 28)
#: The four files, each found as ``<stem>.gz`` or ``<stem>``.
FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
FIX = ("put the four IDX .gz files (" + ", ".join(f"{s}.gz" for s in FILES.values())
       + ") in one of them, set SPARSEFLOW_DATA to their folder, "
       "`apt-get install dataset-fashion-mnist`, or run `sparseflow data download fashion_mnist`")


def _images(path: Path) -> np.ndarray:
    """(N, 28, 28) uint8 images of an IDX file, checked."""
    x = read_idx(path, dtype="uint8", ndim=3)
    if x.shape[1:] != IMAGE_HW:
        raise DataError(f"{path}: images are {x.shape[1]}×{x.shape[2]}, expected 28×28")
    return x


def _labels(path: Path, n_images: int, images: Path) -> np.ndarray:
    """(N,) uint8 labels of an IDX file, checked against the image count and class range."""
    y = read_idx(path, dtype="uint8", ndim=1)
    if len(y) != n_images:
        raise DataError(f"{path}: {len(y)} labels but {images.name} holds {n_images} images")
    if len(y) and int(y.max()) >= NUM_CLASSES:
        bad = int(np.argmax(y >= NUM_CLASSES))
        raise DataError(f"{path}: label out of range: {int(y[bad])} at index {bad} "
                        f"(labels must be in 0..{NUM_CLASSES - 1})")
    return y


def read_split(images: Path, labels: Path) -> tuple[torch.Tensor, torch.Tensor]:
    """Read one split: x (N, 1, 28, 28) float32 in [0, 1], y (N,) int64."""
    x = _images(images)
    y = _labels(labels, len(x), images)
    # One vectorized pass: uint8 → float32 / 255, add the channel axis.
    x_t = torch.from_numpy(x).to(torch.float32).div_(255.0).unsqueeze(1)
    return x_t, torch.from_numpy(y.astype(np.int64))


@DATASETS.register("fashion_mnist", aug_pad=AUG_PAD, aug_flip=AUG_FLIP)
def load_fashion_mnist(cfg: DataConfig) -> RawData:
    """Fashion-MNIST: 70k grayscale 28×28 images of 10 clothing classes (local IDX files)."""
    folder, paths = locate_files("fashion_mnist", cfg.root, list(FILES.values()),
                                 title="Fashion-MNIST", fix=FIX)
    x_tr, y_tr = read_split(paths[FILES["train_images"]], paths[FILES["train_labels"]])
    x_te, y_te = read_split(paths[FILES["test_images"]], paths[FILES["test_labels"]])
    return RawData(
        x_train=x_tr, y_train=y_tr, x_test=x_te, y_test=y_te, num_classes=NUM_CLASSES,
        layout="image", aug_pad=AUG_PAD, aug_flip=AUG_FLIP, source=str(folder),
    )
