"""``sparseflow data list`` and ``sparseflow data download`` through the CLI entry point."""

from __future__ import annotations

from pathlib import Path

import pytest

from sparseflow.data import write_cifar

from tests.test_cli import _run
from tests.test_data_download import (
    LoopbackServer,
    cifar_tarball,
    leftovers,
    serve_source,
)


@pytest.fixture
def isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No SPARSEFLOW_DATA/MIRROR; empty user and system data folders; a wide terminal."""
    import sparseflow.data.search as search

    monkeypatch.delenv("SPARSEFLOW_DATA", raising=False)
    monkeypatch.delenv("SPARSEFLOW_MIRROR", raising=False)
    monkeypatch.setattr(search, "user_data_root", lambda: tmp_path / "user")
    monkeypatch.setattr(search, "SYSTEM_DATA_ROOT", tmp_path / "system")
    monkeypatch.setenv("COLUMNS", "300")  # rich wraps table cells to the terminal width
    return tmp_path


def _row(out: str, name: str) -> list[str]:
    """The cells of the table row of dataset ``name``."""
    (line,) = [ln for ln in out.splitlines() if ln.startswith(f"│ {name} ")]
    return [cell.strip() for cell in line.strip("│").split("│")]


def test_list_shows_where_each_dataset_is(isolated: Path, capsys) -> None:
    write_cifar(isolated / "user" / "cifar10")
    code, out, _ = _run(["data", "list"], capsys)
    assert code == 0
    assert _row(out, "mnist1d")[:3] == ["mnist1d", "yes", "generated locally (mnist1d package)"]
    assert _row(out, "digits")[:3] == ["digits", "yes", "bundled with scikit-learn"]
    assert _row(out, "cifar10") == ["cifar10", "yes",
                                    str(isolated / "user/cifar10/cifar-10-batches-py"),
                                    "sparseflow data download cifar10"]
    assert _row(out, "cifar100")[:3] == ["cifar100", "no", "not found"]
    assert _row(out, "fashion_mnist")[:3] == ["fashion_mnist", "no", "not found"]


def test_download_then_already_present(isolated: Path, capsys,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    tarball, _ = cifar_tarball(isolated / "src")
    with LoopbackServer() as server:
        serve_source(monkeypatch, server, "cifar10", {"cifar-10-python.tar.gz": tarball}, True)
        code, out, err = _run(["data", "download", "cifar10", "--mirror", server.url], capsys)
        assert code == 0, err
        dest = isolated / "user" / "cifar10"
        assert f"cifar10 downloaded, verified and installed at {dest}" in out.replace("\n", "")
        code, out, _ = _run(["data", "download", "cifar10", "--mirror", server.url, "-q"],
                            capsys)
        assert code == 0 and "already present and valid" in out
        assert server.requests == 1
    code, out, _ = _run(["data", "list"], capsys)
    assert _row(out, "cifar10")[1] == "yes"


def test_download_to_dest_says_how_to_use_it(isolated: Path, capsys,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    tarball, _ = cifar_tarball(isolated / "src", "cifar100")
    dest = isolated / "elsewhere"
    with LoopbackServer() as server:
        serve_source(monkeypatch, server, "cifar100", {"cifar-100-python.tar.gz": tarball}, True)
        code, out, _ = _run(["data", "download", "cifar100", "--mirror", server.url,
                             "--dest", str(dest), "--quiet"], capsys)
    assert code == 0 and (dest / "cifar-100-python" / "train").is_file()
    assert f"set data.root or SPARSEFLOW_DATA to {dest}" in out.replace("\n", "")


def _assert_one_line_error(code: int, err: str, needle: str) -> None:
    assert code == 2
    lines = [ln for ln in err.strip().splitlines() if ln.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("error: ") and needle in lines[0], lines[0]


def test_network_error_is_one_line_exit_2(isolated: Path, capsys,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    tarball, _ = cifar_tarball(isolated / "src")
    with LoopbackServer() as server:
        serve_source(monkeypatch, server, "cifar10", {"cifar-10-python.tar.gz": tarball}, True)
        server.modes["cifar-10-python.tar.gz"] = "cut"
        code, _, err = _run(["data", "download", "cifar10", "--mirror", server.url], capsys)
    _assert_one_line_error(code, err, "connection closed after")
    assert not (isolated / "user" / "cifar10").exists() and leftovers(isolated / "user") == []


def test_unknown_dataset_is_one_line_exit_2(isolated: Path, capsys) -> None:
    code, _, err = _run(["data", "download", "cifar1O"], capsys)
    _assert_one_line_error(code, err, "unknown downloadable dataset 'cifar1O'. Did you mean "
                                      "'cifar10'?")
    code, _, err = _run(["data", "download", "cifar"], capsys)
    _assert_one_line_error(code, err, "Valid downloadable datasets: cifar10, cifar100, "
                                      "fashion_mnist")
    code, _, err = _run(["data", "download", "mnist1d"], capsys)
    _assert_one_line_error(code, err, "mnist1d needs no download: it is generated locally")
