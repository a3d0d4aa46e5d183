"""Atomic file writes: write to a temporary file in the same folder, fsync, then rename.

A reader (or a crash) never sees a half-written file: either the old content or the new.
"""

from __future__ import annotations

import json
import math
import os
import stat
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import torch

from sparseflow.utils.critical import critical


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _atomic(path: str | Path, write: Callable[[IO[bytes]], None], durable: bool = True) -> None:
    # An interrupt mid-write would leave torch.save's writer to fail in its clean-up: defer it
    # until the file is in place (or removed).
    with critical():
        _write_atomic(path, write, durable)


def _write_atomic(path: str | Path, write: Callable[[IO[bytes]], None], durable: bool) -> None:
    dest = Path(path)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            if durable:  # survive an OS crash / power loss, not only a killed process
                os.fsync(fh.fileno())
        # mkstemp creates the file 0600; give it the permissions a plain open() would.
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, dest)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_bytes(path: str | Path, data: bytes, *, durable: bool = True) -> None:
    """Write ``data`` to ``path`` atomically (``durable=False``: without the fsync, see
    :func:`atomic_torch_save`)."""
    _atomic(path, lambda fh: fh.write(data), durable)


#: How a non-finite float is spelled in our JSON files (JSON itself has no inf or NaN).
NONFINITE_TEXT: dict[str, float] = {"inf": math.inf, "-inf": -math.inf, "nan": math.nan}


def _nonfinite_text(value: float) -> str:
    return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")


def check_output_file(path: str | Path) -> int | None:
    """The mode of a user-named output file (None: it does not exist yet); refuses, before any
    work is done, a target :func:`write_output` would refuse: :class:`IsADirectoryError` for a
    directory, :class:`FileExistsError` for a block device, a socket or the like."""
    dest = Path(path)
    try:
        mode = os.stat(dest).st_mode
    except FileNotFoundError:
        return None
    if stat.S_ISDIR(mode):
        raise IsADirectoryError(21, "is a directory; name a file", str(dest))
    if not (stat.S_ISREG(mode) or stat.S_ISCHR(mode) or stat.S_ISFIFO(mode)):
        raise FileExistsError(17, "exists and is neither a regular file, a character device "
                              "nor a FIFO; name another file", str(dest))
    return mode


def write_output(path: str | Path, data: bytes) -> Path:
    """Write a user-named output file (``--out``): atomically when ``path`` is new or a
    regular file; written through (never replaced) when it is a character device or a FIFO
    (``/dev/null``, a pipe); refused when it is anything else (a directory, a block device, a
    socket: see :func:`check_output_file`). Raises :class:`OSError` with the path when the
    write fails (``/dev/full``: no space).
    """
    dest = Path(path)
    mode = check_output_file(dest)
    try:
        if mode is None or stat.S_ISREG(mode):
            atomic_write_bytes(dest, data)
        else:  # a character device or a FIFO is written to, not renamed over
            with open(dest, "wb") as fh:
                fh.write(data)
                fh.flush()
    except OSError as exc:
        raise OSError(exc.errno, exc.strerror or str(exc), str(dest)) from exc
    return dest


def json_safe(obj: Any) -> Any:
    """Spell non-finite floats (a diverged loss) as the strings "inf", "-inf", "nan" so the
    JSON stays standard and the value survives; :func:`json_decode` turns them back."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else _nonfinite_text(obj)
    if isinstance(obj, dict):
        return {k: json_safe(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [json_safe(v) for v in obj]
    return obj


def json_decode(obj: Any) -> Any:
    """The inverse of :func:`json_safe`: a value that is exactly "inf", "-inf" or "nan" becomes
    that float (keys and every other string stay as they are)."""
    if isinstance(obj, str):
        return NONFINITE_TEXT.get(obj, obj)
    if isinstance(obj, dict):
        return {k: json_decode(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [json_decode(v) for v in obj]
    return obj


def json_loads(text: str | bytes) -> Any:
    """Parse JSON written by :func:`atomic_write_json` (or the store), non-finite floats
    decoded. A bare ``NaN``/``Infinity`` token (not standard JSON) is refused."""
    return json_decode(json.loads(text, parse_constant=_refuse_constant))


def _refuse_constant(token: str) -> Any:
    raise ValueError(f"non-standard JSON constant {token}")


def read_json(path: str | Path) -> Any:
    """:func:`json_loads` of a file's text."""
    return json_loads(Path(path).read_bytes())


def atomic_write_json(path: str | Path, obj: Any, *, durable: bool = True) -> None:
    """Write ``obj`` as indented JSON atomically; NaN/inf are spelled as text (see
    :func:`json_safe`) and read back by :func:`read_json`."""
    text = json.dumps(json_safe(obj), indent=2, allow_nan=False) + "\n"
    atomic_write_bytes(path, text.encode(), durable=durable)


def create_json_once(path: str | Path, obj: Any) -> bool:
    """Create ``path`` holding ``obj`` as JSON unless it exists; True when this call created
    it. Of concurrent callers (processes, or nodes on one shared filesystem) exactly one
    creates the file, and the others find it complete: it is written to a temporary file and
    then hard-linked into place, which fails when the name exists."""
    dest = Path(path)
    dest.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(json_safe(obj), indent=2, allow_nan=False) + "\n"
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(text.encode())
        os.chmod(tmp, 0o666 & ~_umask())
        os.link(tmp, dest)
        return True
    except FileExistsError:
        return False
    finally:
        Path(tmp).unlink(missing_ok=True)


def atomic_torch_save(obj: Any, path: str | Path, *, durable: bool = True) -> None:
    """``torch.save`` atomically.

    ``durable=False`` skips the fsync: the file is still replaced atomically (a killed process
    never leaves a torn file), but an OS crash may lose or truncate it. For checkpoints, which
    are rewritten every epoch and verified when loaded, that trade is worth the time.
    """
    _atomic(path, lambda fh: torch.save(obj, fh), durable)
