"""Datasets held in memory as tensors, seeded index batches and batched augmentation.

Importing this package registers every built-in dataset in :data:`sparseflow.registry.DATASETS`
(``mnist1d``, ``digits``, ``fashion_mnist``, ``cifar10``, ``cifar100``). :func:`load_data`
turns a ``DataConfig`` into a :class:`DataBundle`; :func:`epoch_batches` draws one epoch's index
batches; an :class:`Augmenter` augments a training batch with randomness from an explicit
generator. ``sparseflow.data.download`` fetches the file-based datasets.
"""

from __future__ import annotations

# Registering modules: importing them fills DATASETS. The order is `sparseflow list`'s order,
# the default (mnist1d) first.
# isort: off
from sparseflow.data import mnist1d, digits, fashion_mnist, cifar  # noqa: F401
# isort: on
from sparseflow.data.augment import Augmenter
from sparseflow.data.batches import epoch_batches
from sparseflow.data.bundle import DataBundle, Split
from sparseflow.data.cifar import write_cifar
from sparseflow.data.idx import read_idx, write_idx
from sparseflow.data.load import load_data
from sparseflow.data.raw import RawData
from sparseflow.data.search import dataset_search_dirs

__all__ = [
    "Augmenter",
    "DataBundle",
    "RawData",
    "Split",
    "dataset_search_dirs",
    "epoch_batches",
    "load_data",
    "read_idx",
    "write_cifar",
    "write_idx",
]
