"""The on-disk cache of generated datasets (arrays in ``.npz`` files, written atomically)."""

from __future__ import annotations

import hashlib
import io
import json
import os
import warnings
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import platformdirs

from sparseflow.utils.atomic import atomic_write_bytes


def cache_dir() -> Path:
    """``$SPARSEFLOW_CACHE`` if set, else ``platformdirs.user_cache_dir("sparseflow")``."""
    env = os.environ.get("SPARSEFLOW_CACHE")
    return Path(env).expanduser() if env else Path(platformdirs.user_cache_dir("sparseflow"))


def cache_key(params: dict[str, Any]) -> str:
    """A short, stable hash of JSON-serializable generation parameters."""
    text = json.dumps(params, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def load_arrays(path: Path, expected: dict[str, tuple[np.dtype, int]]
                ) -> dict[str, np.ndarray] | None:
    """The arrays of ``path`` if it is a readable ``.npz`` holding every expected key with the
    expected (dtype, ndim); otherwise None, so a corrupt or stale file is regenerated, never
    trusted."""
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in expected}
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
        return None
    for key, (dtype, ndim) in expected.items():
        if arrays[key].dtype != dtype or arrays[key].ndim != ndim:
            return None
    return arrays


def save_arrays(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """Write ``arrays`` to ``path`` as ``.npz`` atomically.

    The cache is only an optimization: if it cannot be written (read-only home, full disk) a
    warning says so and the caller carries on with the arrays it has.
    """
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    try:
        atomic_write_bytes(path, buf.getvalue())
    except OSError as exc:
        warnings.warn(f"could not write dataset cache {path}: {exc}; set SPARSEFLOW_CACHE to "
                      "a writable folder to avoid regenerating", RuntimeWarning, stacklevel=3)
