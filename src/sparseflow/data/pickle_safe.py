"""Read (and, for tests, write) the Python-2 pickles of the CIFAR batches without trusting them.

A pickle can call any importable function while it loads; a downloaded batch is untrusted input,
so :class:`RestrictedUnpickler` resolves only the globals that numpy array pickles need and
refuses every other one before anything runs.

The CIFAR batches were written by Python 2's ``cPickle`` (protocol 2): a dict whose keys and
strings are Python-2 ``str`` (``SHORT_BINSTRING``/``BINSTRING`` opcodes, read back as ``bytes``
with ``encoding="bytes"``) and whose ``data`` is a uint8 ndarray. Such a file references exactly
three globals: ``numpy.core.multiarray._reconstruct``, ``numpy.ndarray`` and ``numpy.dtype``.
:func:`dumps_py2` writes the same opcodes, so tests read files in the real format.
"""

from __future__ import annotations

import codecs
import io
import pickle
import struct
from pathlib import Path
from typing import Any

import numpy as np

from sparseflow.errors import DataError

try:  # numpy ≥ 2 moved the implementation to numpy._core; numpy.core warns on access there.
    from numpy._core.multiarray import _reconstruct
except ImportError:  # numpy 1.x
    from numpy.core.multiarray import _reconstruct  # type: ignore[no-redef]


def _latin1_encode(text: str | bytes, encoding: str = "latin1") -> bytes:
    """``_codecs.encode`` limited to Latin-1, the only use protocol 2 makes of it."""
    if codecs.lookup(encoding).name != "iso8859-1":
        raise pickle.UnpicklingError(f"_codecs.encode with encoding {encoding!r} (only latin1 "
                                     "appears in a protocol-2 pickle)")
    return text if isinstance(text, bytes) else text.encode("latin1")


#: (module, name) → the object a CIFAR pickle may load. The three numpy globals rebuild an
#: ndarray: ``_reconstruct(ndarray, (0,), b"b")`` makes an empty array, ``dtype(b"u1", 0, 1)``
#: its element type, and BUILD sets shape, dtype and bytes. Both module spellings of
#: ``_reconstruct`` map to the function itself (numpy 1 writes ``numpy.core``, numpy 2
#: ``numpy._core``). ``_codecs.encode`` is what Python 3 writes for ``bytes`` under protocol 2
#: (a copy re-saved from Python 3); it is allowed only with the latin1 codec.
ALLOWED_GLOBALS: dict[tuple[str, str], Any] = {
    ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("_codecs", "encode"): _latin1_encode,
}


class ForbiddenGlobal(pickle.UnpicklingError):
    """A pickle referenced a global outside :data:`ALLOWED_GLOBALS`."""

    def __init__(self, module: str, name: str) -> None:
        super().__init__(f"{module}.{name}")
        self.module, self.name = module, name


class RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that resolves only :data:`ALLOWED_GLOBALS` (nothing is imported by name)."""

    def find_class(self, module: str, name: str) -> Any:
        """The allowed object for ``module.name``; :class:`ForbiddenGlobal` for anything else."""
        try:
            return ALLOWED_GLOBALS[(module, name)]
        except KeyError:
            raise ForbiddenGlobal(module, name) from None

    def persistent_load(self, pid: Any) -> Any:
        """Persistent ids never occur in a CIFAR batch."""
        raise pickle.UnpicklingError(f"persistent id {pid!r}")


def load_restricted(path: Path, what: str = "a CIFAR batch") -> Any:
    """Unpickle ``path`` (``encoding="bytes"``) allowing only :data:`ALLOWED_GLOBALS`.

    A forbidden global is a :class:`DataError` naming the file and the global, raised before
    the global is called. Any other failure (truncated file, not a pickle, bad array state) is
    a one-line :class:`DataError` naming the file.
    """
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise DataError(f"{path}: cannot read ({exc.strerror or exc})") from None
    try:
        return RestrictedUnpickler(io.BytesIO(data), encoding="bytes").load()
    except ForbiddenGlobal as exc:
        raise DataError(f"refusing to load {path}: it references {exc.module}.{exc.name}, "
                        f"which {what} never contains") from None
    except Exception as exc:  # noqa: BLE001  (any failure of an untrusted pickle is corruption)
        detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise DataError(f"{path}: not a valid pickle of {what} ({detail})") from None


# --- writing, Python-2 style (for tests and fixtures) ----------------------------------------

def _str(data: bytes) -> bytes:
    """A Python-2 ``str``: SHORT_BINSTRING below 256 bytes, else BINSTRING."""
    if len(data) < 256:
        return b"U" + bytes([len(data)]) + data
    return b"T" + struct.pack("<i", len(data)) + data


def _int(value: int) -> bytes:
    """BININT1 / BININT2 / BININT, as cPickle chooses."""
    if 0 <= value < 256:
        return b"K" + bytes([value])
    if 0 <= value < 65536:
        return b"M" + struct.pack("<H", value)
    return b"J" + struct.pack("<i", value)


def _array(arr: np.ndarray) -> bytes:
    """A uint8 C-ordered ndarray the way numpy under Python 2 reduced it."""
    if arr.dtype != np.uint8:
        raise ValueError(f"dumps_py2 writes uint8 arrays only, got {arr.dtype}")
    arr = np.ascontiguousarray(arr)
    dims = b"".join(_int(int(d)) for d in arr.shape)
    # Tuples of 0..3 items have one-byte opcodes (EMPTY_TUPLE, TUPLE1..3); longer use MARK.
    short = {0: b")", 1: b"\x85", 2: b"\x86", 3: b"\x87"}
    shape = dims + short[arr.ndim] if arr.ndim in short else b"(" + dims + b"t"
    dtype = (b"cnumpy\ndtype\n" + _str(b"u1") + _int(0) + _int(1) + b"\x87R"
             + b"(" + _int(3) + _str(b"|") + b"NNN" + b"J\xff\xff\xff\xffJ\xff\xff\xff\xff"
             + _int(0) + b"tb")
    return (b"cnumpy.core.multiarray\n_reconstruct\ncnumpy\nndarray\n" + _int(0) + b"\x85"
            + _str(b"b") + b"\x87R"
            + b"(" + _int(1) + shape + dtype + b"\x89" + _str(arr.tobytes()) + b"tb")


def _value(obj: Any) -> bytes:
    if isinstance(obj, np.ndarray):
        return _array(obj)
    if isinstance(obj, bytes):
        return _str(obj)
    if isinstance(obj, bool) or not isinstance(obj, int | list | dict):
        raise TypeError(f"dumps_py2 cannot write {type(obj).__name__}")
    if isinstance(obj, int):
        return _int(obj)
    if isinstance(obj, list):
        # cPickle appends in batches of 1000 items.
        out = [b"]"]
        for i in range(0, len(obj), 1000):
            out += [b"(", *(_value(v) for v in obj[i:i + 1000]), b"e"]
        return b"".join(out)
    out = [b"}"]
    items = list(obj.items())
    for i in range(0, len(items), 1000):
        out += [b"(", *(_value(k) + _value(v) for k, v in items[i:i + 1000]), b"u"]
    return b"".join(out)


def dumps_py2(obj: dict[bytes, Any]) -> bytes:
    """Protocol-2 pickle bytes of ``obj`` as Python 2's cPickle wrote the CIFAR batches.

    Supports dicts, lists, ``bytes`` (written as Python-2 ``str``), non-negative ints below
    2³¹ and uint8 ndarrays: what a CIFAR batch or meta file holds. No memo opcodes are written.
    """
    return b"\x80\x02" + _value(obj) + b"."
