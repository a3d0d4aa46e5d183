"""Where dataset files are looked for, and finding a folder that holds all of them."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import platformdirs

from sparseflow.errors import DataError

#: System-wide folders, searched last. Debian's ``dataset-fashion-mnist`` package installs here.
SYSTEM_DATA_ROOT = Path("/usr/share/datasets")


def user_data_root() -> Path:
    """The per-user data folder of sparseflow (``platformdirs.user_data_dir``)."""
    return Path(platformdirs.user_data_dir("sparseflow"))


def _spellings(name: str) -> list[str]:
    """``fashion_mnist`` → [``fashion_mnist``, ``fashion-mnist``] (distributions use either)."""
    return list(dict.fromkeys([name, name.replace("_", "-")]))


def dataset_search_dirs(name: str, root: str | None) -> list[Path]:
    """Folders searched for the files of dataset ``name``, in order.

    ``root`` given: only that folder. Otherwise ``$SPARSEFLOW_DATA/<name>`` (also with ``-``
    for ``_``), ``$SPARSEFLOW_DATA`` itself, ``<user data dir>/<name>``, and the system folder
    ``/usr/share/datasets/<name with ->``. Folders need not exist.
    """
    if root is not None:
        return [Path(root).expanduser()]
    dirs: list[Path] = []
    env = os.environ.get("SPARSEFLOW_DATA")
    if env:
        base = Path(env).expanduser()
        dirs += [base / s for s in _spellings(name)] + [base]
    dirs.append(user_data_root() / name)
    dirs.append(SYSTEM_DATA_ROOT / name.replace("_", "-"))
    return list(dict.fromkeys(dirs))


def _find_in(folder: Path, stems: Sequence[str]) -> dict[str, Path]:
    """The files of ``stems`` present in ``folder``: ``stem.gz`` preferred, else ``stem``."""
    found: dict[str, Path] = {}
    for stem in stems:
        for candidate in (folder / f"{stem}.gz", folder / stem):
            if candidate.is_file():
                found[stem] = candidate
                break
    return found


def locate_files(name: str, root: str | None, stems: Sequence[str], *, title: str,
                 fix: str) -> tuple[Path, dict[str, Path]]:
    """The first search folder holding every file of ``stems`` (each ``.gz`` or plain).

    Returns (folder, stem → path). If none holds them all, raises one-line :class:`DataError`
    naming the dataset (``title``), each folder looked in (with what a partial folder lacks),
    and ``fix``.
    """
    looked: list[str] = []
    for folder in dataset_search_dirs(name, root):
        found = _find_in(folder, stems)
        if len(found) == len(stems):
            return folder, found
        if found:
            missing = [s for s in stems if s not in found]
            looked.append(f"{folder} (has {len(found)} of {len(stems)}; "
                          f"missing {', '.join(missing)})")
        else:
            looked.append(str(folder))
    raise DataError(f"{title} not found (looked in: {'; '.join(looked)}); {fix}")
