"""IDX reading/writing: round trips, and every malformation is a one-line DataError."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest

from sparseflow.data import read_idx, write_idx
from sparseflow.data.idx import encode_idx
from sparseflow.errors import DataError


@pytest.mark.parametrize("dtype", ["uint8", "int8", "int16", "int32", "float32", "float64"])
@pytest.mark.parametrize("suffix", ["", ".gz"])
def test_round_trip(tmp_path: Path, dtype: str, suffix: str) -> None:
    rng = np.random.default_rng(0)
    arr = (rng.normal(size=(3, 4, 5)) * 50).astype(dtype)
    path = tmp_path / f"a-idx3{suffix}"
    write_idx(path, arr)
    back = read_idx(path)
    assert back.dtype == np.dtype(dtype) and back.dtype.isnative
    assert back.shape == (3, 4, 5)
    np.testing.assert_array_equal(back, arr)
    assert back.flags.writeable  # usable by torch.from_numpy without a warning


def test_header_is_standard_big_endian(tmp_path: Path) -> None:
    # The MNIST convention: 0x00000803 then big-endian dims, then raw bytes.
    arr = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    raw = encode_idx(arr)
    assert raw[:4] == bytes([0, 0, 0x08, 3])
    assert raw[4:16] == b"\x00\x00\x00\x02\x00\x00\x00\x03\x00\x00\x00\x04"
    assert raw[16:] == arr.tobytes()
    write_idx(tmp_path / "x.gz", arr)
    assert gzip.decompress((tmp_path / "x.gz").read_bytes()) == raw


def test_int32_is_stored_big_endian(tmp_path: Path) -> None:
    raw = encode_idx(np.array([1, 256], dtype=np.int32))
    assert raw[:4] == bytes([0, 0, 0x0C, 1])
    assert raw[8:] == b"\x00\x00\x00\x01\x00\x00\x01\x00"


def test_gzip_output_is_deterministic(tmp_path: Path) -> None:
    arr = np.arange(100, dtype=np.uint8)
    write_idx(tmp_path / "a.gz", arr)
    write_idx(tmp_path / "b.gz", arr)
    assert (tmp_path / "a.gz").read_bytes() == (tmp_path / "b.gz").read_bytes()


def test_write_rejects_unsupported_dtype(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="IDX cannot store dtype int64"):
        write_idx(tmp_path / "x", np.zeros(3, dtype=np.int64))


def _one_line_error(path: Path, match: str, **kw: object) -> str:
    with pytest.raises(DataError) as err:
        read_idx(path, **kw)
    msg = str(err.value)
    assert "\n" not in msg
    assert str(path) in msg
    assert match in msg, msg
    assert err.value.__cause__ is None  # no chained numpy/gzip traceback
    return msg


def test_missing_file(tmp_path: Path) -> None:
    _one_line_error(tmp_path / "nope.gz", "file not found")


def test_bad_gzip(tmp_path: Path) -> None:
    path = tmp_path / "x-idx1-ubyte.gz"
    path.write_bytes(b"this is not gzip data at all")
    _one_line_error(path, "not a valid gzip file")


def test_truncated_gzip_stream(tmp_path: Path) -> None:
    path = tmp_path / "x-idx1-ubyte.gz"
    path.write_bytes(gzip.compress(encode_idx(np.arange(1000, dtype=np.uint8)))[:-20])
    _one_line_error(path, "not a valid gzip file")


def test_wrong_magic_number(tmp_path: Path) -> None:
    path = tmp_path / "x-idx1-ubyte"
    path.write_bytes(bytes([0x12, 0x34, 0x08, 0x01]) + b"\x00\x00\x00\x01" + b"\x05")
    _one_line_error(path, "wrong magic number 0x12340801")


def test_unknown_dtype_code(tmp_path: Path) -> None:
    path = tmp_path / "x-idx1-ubyte"
    path.write_bytes(bytes([0, 0, 0x07, 1]) + b"\x00\x00\x00\x01" + b"\x05")
    _one_line_error(path, "unknown dtype code 0x07")


def test_expected_dtype_mismatch(tmp_path: Path) -> None:
    path = tmp_path / "x-idx1-ubyte"
    write_idx(path, np.arange(4, dtype=np.int16))
    _one_line_error(path, "wrong dtype code 0x0B (int16); expected uint8", dtype="uint8")


def test_expected_ndim_mismatch(tmp_path: Path) -> None:
    path = tmp_path / "x-idx3-ubyte"
    write_idx(path, np.zeros((2, 3), dtype=np.uint8))
    _one_line_error(path, "2-D data", ndim=3)


def test_truncated_header(tmp_path: Path) -> None:
    path = tmp_path / "x"
    path.write_bytes(bytes([0, 0, 0x08]))
    _one_line_error(path, "truncated header")
    path.write_bytes(bytes([0, 0, 0x08, 3]) + b"\x00\x00\x00\x02")  # 3 dims announced, 1 given
    _one_line_error(path, "truncated header")


def test_truncated_data(tmp_path: Path) -> None:
    path = tmp_path / "x.gz"
    raw = encode_idx(np.zeros((10, 28, 28), dtype=np.uint8))
    path.write_bytes(gzip.compress(raw[:-100]))
    msg = _one_line_error(path, "truncated data")
    assert "(10, 28, 28)" in msg and "7840" in msg and "7740" in msg


def test_trailing_bytes(tmp_path: Path) -> None:
    path = tmp_path / "x"
    path.write_bytes(encode_idx(np.zeros(5, dtype=np.uint8)) + b"\x00")
    _one_line_error(path, "trailing bytes")
