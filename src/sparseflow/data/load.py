"""``load_data``: a :class:`DataConfig` → a ready :class:`DataBundle`."""

from __future__ import annotations

import torch

from sparseflow.config.schema import DataConfig
from sparseflow.data.augment import Augmenter
from sparseflow.data.bundle import DataBundle, Split
from sparseflow.data.raw import RawData
from sparseflow.data.splits import channel_stats, normalize, split_indices
from sparseflow.errors import ConfigError
from sparseflow.registry import DATASETS

#: The value of ``DataConfig.num_samples`` that means "not set".
DEFAULT_NUM_SAMPLES: int = DataConfig.model_fields["num_samples"].default


def check_num_samples(cfg: DataConfig) -> None:
    """Only generated datasets (registered with ``num_samples=True``) take num_samples."""
    if cfg.num_samples != DEFAULT_NUM_SAMPLES and not DATASETS.meta(cfg.name).get("num_samples"):
        takers = [n for n in DATASETS.names() if DATASETS.meta(n).get("num_samples")]
        raise ConfigError(f"data.num_samples applies only to {', '.join(takers)}; got "
                          f"num_samples={cfg.num_samples} for dataset {cfg.name!r} (remove it)")


def build_augmenter(cfg: DataConfig, raw: RawData, fill: torch.Tensor) -> Augmenter | None:
    """The training-batch augmenter (None unless ``cfg.augment``); ``fill`` is (C,)."""
    if not cfg.augment:
        return None
    pad = cfg.aug_pad if cfg.aug_pad is not None else raw.aug_pad
    flip = cfg.aug_flip if cfg.aug_flip is not None else raw.aug_flip
    return Augmenter(pad=pad, flip=flip, fill=fill,
                     spatial_dims=2 if raw.layout == "image" else 1)


def load_data(cfg: DataConfig) -> DataBundle:
    """Load dataset ``cfg.name`` from the DATASETS registry and prepare it for training.

    Steps: hold out ``round(val_fraction · n_train)`` validation examples by a permutation
    seeded with ``split_seed``; keep the first ``train_subset`` of the rest; standardize per
    channel with statistics of the final training split only; build the augmenter (its fill
    value is the normalized raw 0, i.e. background). The test split is the dataset's own.
    """
    raw: RawData = DATASETS.get(cfg.name)(cfg)
    # After loading: a missing or corrupt dataset is the more basic problem, reported first.
    check_num_samples(cfg)
    train_idx, val_idx = split_indices(len(raw.x_train), cfg.val_fraction, cfg.split_seed,
                                       cfg.train_subset)
    x_tr, y_tr = raw.x_train[train_idx], raw.y_train[train_idx]
    x_val, y_val = raw.x_train[val_idx], raw.y_train[val_idx]
    x_te, y_te = raw.x_test, raw.y_test
    channels = x_tr.shape[1] if x_tr.ndim >= 3 else 1
    if cfg.normalize:
        mean, std = channel_stats(x_tr)
        # x_tr and x_val are fresh copies (indexing); the test split is normalized out of place
        # because a loader may hand out a tensor it keeps (e.g. a cache).
        x_tr, x_val = (normalize(x, mean, std, inplace=True) for x in (x_tr, x_val))
        x_te = normalize(x_te, mean, std)
    else:
        mean, std = torch.zeros(channels), torch.ones(channels)
    fill = (0.0 - mean) / std  # (C,): where a raw 0 pixel lands after normalization
    return DataBundle(
        name=cfg.name,
        train=Split(x_tr.contiguous(), y_tr), val=Split(x_val.contiguous(), y_val),
        test=Split(x_te.contiguous(), y_te),
        num_classes=raw.num_classes,
        input_shape=tuple(int(s) for s in raw.x_train.shape[1:]),
        augmenter=build_augmenter(cfg, raw, fill),
        source=raw.source,
        stats={"normalized": cfg.normalize, "mean": mean.tolist(), "std": std.tolist()},
    )
