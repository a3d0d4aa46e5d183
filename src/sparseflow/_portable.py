"""``SPARSEFLOW_PORTABLE``: CPU-independent code paths, set before torch computes anything.

Kept free of torch imports: :mod:`sparseflow` calls :func:`apply_portable_env` first thing, so
the variables are in place before PyTorch, MKL or oneDNN read them (at their first operation).
"""

from __future__ import annotations

import os

#: Environment that pins the CPU code paths of PyTorch, MKL and oneDNN to AVX2.
PORTABLE_ENV = {
    "ATEN_CPU_CAPABILITY": "avx2",
    "MKL_CBWR": "AVX2,STRICT",
    "ONEDNN_MAX_CPU_ISA": "AVX2",
}


def portable_requested() -> bool:
    """Whether ``SPARSEFLOW_PORTABLE`` asks for CPU-independent code paths."""
    return os.environ.get("SPARSEFLOW_PORTABLE", "").strip().lower() in ("1", "true", "yes")


def apply_portable_env() -> None:
    """With ``SPARSEFLOW_PORTABLE=1``, set :data:`PORTABLE_ENV` (values already set win).

    Called when sparseflow is imported. The libraries read these variables once, at their
    first operation, so this works when no tensor operation ran before ``import sparseflow``;
    :func:`reproducibility` records what is in force. Child processes (study workers, Ray
    tasks started from this environment) inherit them.
    """
    if portable_requested():
        for key, value in PORTABLE_ENV.items():
            os.environ.setdefault(key, value)
