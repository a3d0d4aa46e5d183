"""Read and write the IDX format of (Fashion-)MNIST, optionally gzip-compressed.

An IDX file is a 4-byte magic number ``00 00 TT NN`` (TT: element type code, NN: number of
dimensions), NN big-endian uint32 dimension sizes, then the elements in C order, big-endian.
A ``.gz`` suffix means the whole file is gzip-compressed. Every malformation raises a one-line
:class:`DataError` naming the file and the problem, never a numpy or gzip traceback.
"""

from __future__ import annotations

import gzip
import io
import zlib
from pathlib import Path

import numpy as np

from sparseflow.errors import DataError
from sparseflow.utils.atomic import atomic_write_bytes

#: IDX element type code → numpy dtype (big-endian, as stored in the file).
IDX_DTYPES: dict[int, np.dtype] = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_CODES: dict[str, int] = {dt.newbyteorder("=").str[1:]: code for code, dt in IDX_DTYPES.items()}


def _raw_bytes(path: Path) -> bytes:
    """The file's content, decompressed when the name ends in ``.gz``."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except OSError as exc:
        raise DataError(f"{path}: cannot read ({exc.strerror or exc})") from None
    if path.suffix != ".gz":
        return data
    try:
        return gzip.decompress(data)
    except (OSError, EOFError, zlib.error) as exc:
        raise DataError(f"{path}: not a valid gzip file ({exc})") from None


def _header(path: Path, data: bytes) -> tuple[np.dtype, tuple[int, ...], int]:
    """Parse the header: (stored dtype, dims, offset of the first element)."""
    if len(data) < 4:
        raise DataError(f"{path}: truncated header ({len(data)} bytes; an IDX file starts "
                        "with a 4-byte magic number)")
    magic = int.from_bytes(data[:4], "big")
    if data[0] != 0 or data[1] != 0:
        raise DataError(f"{path}: wrong magic number 0x{magic:08X} (an IDX file starts with "
                        "two zero bytes); not an IDX file")
    code, ndim = data[2], data[3]
    if code not in IDX_DTYPES:
        valid = ", ".join(f"0x{c:02X}" for c in IDX_DTYPES)
        raise DataError(f"{path}: unknown dtype code 0x{code:02X} in magic number "
                        f"0x{magic:08X} (valid codes: {valid})")
    end = 4 + 4 * ndim
    if len(data) < end:
        raise DataError(f"{path}: truncated header (needs {end} bytes for {ndim} dimensions, "
                        f"file holds {len(data)})")
    dims = tuple(int(d) for d in np.frombuffer(data, dtype=">u4", count=ndim, offset=4))
    return IDX_DTYPES[code], dims, end


def read_idx(path: str | Path, *, dtype: str | None = None, ndim: int | None = None
             ) -> np.ndarray:
    """Read an IDX file (gzip-compressed if its name ends in ``.gz``) into a native-order array.

    ``dtype`` (a numpy dtype name such as ``"uint8"``) and ``ndim``, when given, are required of
    the file; a mismatch is a :class:`DataError`, as is any corruption: bad gzip stream, wrong
    magic number, unknown dtype code, truncated header, or a data byte count other than the
    product of the dimensions times the element size.
    """
    path = Path(path)
    data = _raw_bytes(path)
    stored, dims, offset = _header(path, data)
    native = stored.newbyteorder("=")
    if dtype is not None and native != np.dtype(dtype):
        code = data[2]
        raise DataError(f"{path}: wrong dtype code 0x{code:02X} ({native.name}); "
                        f"expected {np.dtype(dtype).name}")
    if ndim is not None and len(dims) != ndim:
        raise DataError(f"{path}: wrong magic number 0x{int.from_bytes(data[:4], 'big'):08X} "
                        f"({len(dims)}-D data, dims {dims}); expected {ndim}-D")
    need = int(np.prod(dims, dtype=np.int64)) * stored.itemsize
    have = len(data) - offset
    if have != need:
        problem = "truncated data" if have < need else "trailing bytes after the data"
        raise DataError(f"{path}: {problem}: header dims {dims} need {need} bytes of "
                        f"{native.name}, file holds {have}")
    # frombuffer is a zero-copy view; astype copies into a writable native-order array.
    return np.frombuffer(data, dtype=stored, offset=offset).reshape(dims).astype(native)


def encode_idx(array: np.ndarray) -> bytes:
    """The uncompressed IDX bytes of ``array`` (dtype uint8, int8, int16, int32, float32/64)."""
    arr = np.asarray(array)
    key = arr.dtype.newbyteorder("=").str[1:]
    if key not in _CODES:
        valid = ", ".join(dt.newbyteorder("=").name for dt in IDX_DTYPES.values())
        raise ValueError(f"IDX cannot store dtype {arr.dtype}; valid dtypes: {valid}")
    if arr.ndim > 255:
        raise ValueError(f"IDX stores at most 255 dimensions, got {arr.ndim}")
    code = _CODES[key]
    buf = io.BytesIO()
    buf.write(bytes([0, 0, code, arr.ndim]))
    buf.write(np.asarray(arr.shape, dtype=">u4").tobytes())
    buf.write(np.ascontiguousarray(arr, dtype=IDX_DTYPES[code]).tobytes())
    return buf.getvalue()


def write_idx(path: str | Path, array: np.ndarray) -> None:
    """Write ``array`` as an IDX file atomically, gzip-compressed if ``path`` ends in ``.gz``."""
    path = Path(path)
    data = encode_idx(array)
    if path.suffix == ".gz":
        # mtime=0: the same array always gives the same bytes (checksums stay stable).
        data = gzip.compress(data, mtime=0)
    atomic_write_bytes(path, data)
