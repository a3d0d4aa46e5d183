"""digits: scikit-learn's bundled 8×8 handwritten digits (offline), fixed 80/20 split."""

from __future__ import annotations

import numpy as np
import torch

from sparseflow.config.schema import DataConfig
from sparseflow.data.raw import RawData
from sparseflow.registry import DATASETS

#: Default augmentation: crop padding 1 pixel, no flip (a mirrored digit is another symbol).
AUG_PAD, AUG_FLIP = 1, False
NUM_CLASSES = 10
#: The train/test split is fixed forever: it never depends on any config value.
TEST_FRACTION, SPLIT_SEED = 0.2, 0


def digits_arrays() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(x_train, y_train, x_test, y_test): x (N, 1, 8, 8) float32 in [0, 1], y int64.

    The 1797 images are split 80/20, stratified by class, with seed 0.
    """
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    x, y = load_digits(return_X_y=True)
    # Pixel values are integers 0..16 (counts of set pixels in 4×4 blocks of the original).
    x = (x / 16.0).astype(np.float32).reshape(-1, 1, 8, 8)
    y = y.astype(np.int64)
    x_tr, x_te, y_tr, y_te = train_test_split(
        x, y, test_size=TEST_FRACTION, stratify=y, random_state=SPLIT_SEED)
    return x_tr, y_tr, x_te, y_te


@DATASETS.register("digits", aug_pad=AUG_PAD, aug_flip=AUG_FLIP)
def load_digits_data(cfg: DataConfig) -> RawData:
    """scikit-learn digits: 1797 grayscale 8×8 images of 10 digits (bundled, offline)."""
    import sklearn

    x_tr, y_tr, x_te, y_te = digits_arrays()
    return RawData(
        x_train=torch.from_numpy(x_tr), y_train=torch.from_numpy(y_tr),
        x_test=torch.from_numpy(x_te), y_test=torch.from_numpy(y_te),
        num_classes=NUM_CLASSES, layout="image", aug_pad=AUG_PAD, aug_flip=AUG_FLIP,
        source=f"sklearn.datasets.load_digits (scikit-learn {sklearn.__version__})",
    )
