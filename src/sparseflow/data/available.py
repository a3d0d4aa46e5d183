"""Where each registered dataset would come from, found without loading it (``data list``)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from sparseflow.data import fashion_mnist
from sparseflow.data.cifar import LAYOUTS, locate_cifar
from sparseflow.data.download import SOURCES
from sparseflow.data.search import locate_files
from sparseflow.errors import DataError
from sparseflow.registry import DATASETS

#: Datasets that need no local files, and why.
BUILT_IN = {
    "mnist1d": "generated locally (mnist1d package)",
    "digits": "bundled with scikit-learn",
}


def _locate_fashion() -> Path:
    folder, _ = locate_files("fashion_mnist", None, list(fashion_mnist.FILES.values()),
                             title="Fashion-MNIST", fix=fashion_mnist.FIX)
    return folder


#: File-based datasets → a function returning the folder the loader would read (DataError if
#: none). It checks that the files exist, not their content.
LOCATORS: dict[str, Callable[[], Path]] = {
    "fashion_mnist": _locate_fashion,
    **{name: (lambda layout=layout: locate_cifar(layout, None)) for name, layout in
       LAYOUTS.items()},
}


@dataclass(frozen=True)
class Availability:
    """One dataset's local status: ``available`` (None: cannot tell) and ``where`` (a folder,
    or a phrase such as "generated locally"); ``downloadable`` by ``sparseflow data download``."""

    name: str
    available: bool | None
    where: str
    downloadable: bool


def availability(name: str) -> Availability:
    """The local status of registered dataset ``name`` (cheap: looks for files, loads nothing)."""
    DATASETS.check(name)
    downloadable = name in SOURCES
    if name in BUILT_IN:
        return Availability(name, True, BUILT_IN[name], downloadable)
    if name not in LOCATORS:
        return Availability(name, None, "unknown (no locator for this dataset)", downloadable)
    try:
        return Availability(name, True, str(LOCATORS[name]()), downloadable)
    except DataError:
        return Availability(name, False, "not found", downloadable)


def all_availability() -> list[Availability]:
    """:func:`availability` of every registered dataset, in registration order."""
    return [availability(name) for name in DATASETS.names()]
