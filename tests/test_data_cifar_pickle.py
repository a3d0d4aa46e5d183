"""The restricted unpickler: the CIFAR format loads, anything else is refused before it runs."""

from __future__ import annotations

import pickle
import pickletools
from pathlib import Path

import numpy as np
import pytest

from sparseflow.config.schema import DataConfig
from sparseflow.data import load_data, write_cifar
from sparseflow.data.pickle_safe import ALLOWED_GLOBALS, dumps_py2, load_restricted
from sparseflow.errors import DataError

#: Set by _mark when a payload runs; a refused payload must leave it empty.
EXECUTED: list[str] = []


def _mark(tag: str) -> str:
    EXECUTED.append(tag)
    return tag


class Payload:
    """Unpickling an instance calls :func:`_mark` (a stand-in for arbitrary code)."""

    def __reduce__(self) -> tuple:
        return (_mark, ("payload ran",))


class Plain:
    """A custom class: loading it would import this test module by name."""

    def __init__(self) -> None:
        self.x = 1


def globals_of(data: bytes) -> set[str]:
    """``module.name`` of every GLOBAL opcode in a pickle."""
    return {str(arg).replace(" ", ".") for op, arg, _ in pickletools.genops(data)
            if op.name == "GLOBAL"}


def test_python2_format_references_exactly_three_globals() -> None:
    arr = np.arange(6 * 3072, dtype=np.uint8).reshape(6, 3072) % 251
    data = dumps_py2({b"data": arr, b"labels": [0, 1, 2, 3, 4, 5], b"batch_label": b"x",
                      b"filenames": [b"a.png"] * 6})
    assert data[:2] == b"\x80\x02"  # protocol 2, as cPickle wrote the originals
    assert globals_of(data) == {"numpy.core.multiarray._reconstruct", "numpy.ndarray",
                                "numpy.dtype"}
    ops = {op.name for op, _, _ in pickletools.genops(data)}
    assert {"SHORT_BINSTRING", "BINSTRING"} <= ops and "BINUNICODE" not in ops
    # The stock unpickler reads it as the CIFAR page says (encoding="bytes")...
    stock = pickle.loads(data, encoding="bytes")
    assert np.array_equal(stock[b"data"], arr) and stock[b"filenames"][0] == b"a.png"


def test_restricted_equals_stock(tmp_path: Path) -> None:
    arr = (np.arange(4 * 3072) % 256).astype(np.uint8).reshape(4, 3072)
    obj = {b"data": arr, b"labels": [9, 8, 7, 6], b"batch_label": b"training batch 1 of 5"}
    path = tmp_path / "b"
    for data in (dumps_py2(obj), pickle.dumps(obj, protocol=2)):
        path.write_bytes(data)
        got = load_restricted(path)
        assert np.array_equal(got[b"data"], arr) and got[b"data"].flags.writeable
        assert got[b"labels"] == [9, 8, 7, 6]
    # Python 3's protocol 2 writes bytes through _codecs.encode and numpy 2's module name.
    assert globals_of(pickle.dumps(obj, protocol=2)) <= {
        f"{m}.{n}" for m, n in ALLOWED_GLOBALS}


def test_allowed_globals_are_exactly_these() -> None:
    assert set(ALLOWED_GLOBALS) == {
        ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode")}


def _write(tmp_path: Path, data: bytes) -> Path:
    write_cifar(tmp_path)
    path = tmp_path / "cifar-10-batches-py" / "data_batch_1"
    path.write_bytes(data)
    return path


def _os_system(sentinel: Path) -> bytes:
    # Protocol 0 by hand: GLOBAL os.system, a one-string tuple, REDUCE.
    return b"cos\nsystem\n(S'touch " + str(sentinel).encode() + b"'\ntR."


@pytest.mark.parametrize("kind", ["os.system", "os.system in a batch", "custom reduce",
                                  "custom class", "builtins.eval", "codecs other than latin1"])
def test_forbidden_globals_are_refused_and_never_run(tmp_path: Path, kind: str) -> None:
    EXECUTED.clear()
    sentinel = tmp_path / "sentinel"
    here = __name__
    if kind == "os.system":
        data, culprit = _os_system(sentinel), "os.system"
        control = tmp_path / "control"
        pickle.loads(_os_system(control))  # the stock unpickler runs it: the payload is live
        assert control.exists()
    elif kind == "os.system in a batch":
        # A valid-looking batch whose labels entry is the payload.
        data = (dumps_py2({b"data": np.zeros((1, 3072), np.uint8)})[:-2]
                + b"U\x06labels" + _os_system(sentinel)[:-1] + b"u.")
        culprit = "os.system"
    elif kind == "custom reduce":
        data, culprit = pickle.dumps(Payload(), protocol=2), f"{here}._mark"
        assert pickle.loads(data) == "payload ran" and EXECUTED  # the payload is live
        EXECUTED.clear()
    elif kind == "custom class":
        data, culprit = pickle.dumps(Plain(), protocol=2), f"{here}.Plain"
    elif kind == "builtins.eval":
        data = b"\x80\x02cbuiltins\neval\nX\x0b\x00\x00\x00print('hi')\x85R."
        culprit = "builtins.eval"
    else:
        data = b"\x80\x02c_codecs\nencode\nX\x01\x00\x00\x00xX\x05\x00\x00\x00rot13\x86R."
        culprit = None
    path = _write(tmp_path, data)
    with pytest.raises(DataError) as err:
        load_data(DataConfig(name="cifar10", root=str(tmp_path)))
    msg = str(err.value)
    if culprit is not None:
        assert msg == (f"refusing to load {path}: it references {culprit}, which a CIFAR-10 "
                       "batch never contains")
    else:
        assert msg.startswith(f"{path}: not a valid pickle") and "latin1" in msg
    assert not sentinel.exists() and EXECUTED == []
