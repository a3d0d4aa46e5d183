"""``sparseflow.data.download`` against a real HTTP server on 127.0.0.1 serving small files in
the real formats: success end to end, and every failure leaves nothing half-written."""

from __future__ import annotations

import gzip
import hashlib
import io
import re
import socket
import tarfile
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
import torch

import sparseflow.data.search as search
from sparseflow.config.schema import DataConfig
from sparseflow.data import download as dl
from sparseflow.data import load_data, write_cifar
from sparseflow.data.fashion_mnist import FILES
from sparseflow.data.idx import encode_idx
from sparseflow.errors import DataError

LIFETIME_S = 20.0  # a server outliving this stops itself, so a broken test cannot hang the run


class LoopbackServer:
    """An HTTP server on 127.0.0.1 (port 0) in a thread, serving ``files`` (name → bytes).

    ``modes`` picks a misbehaviour per name: ``cut`` sends the full Content-Length but half the
    body, then closes; ``chunked_cut`` sends half the body as one chunk of a chunked response
    (no length known), then closes; ``stall`` sends headers and then nothing until the server
    stops.
    ``requests`` counts GETs.
    """

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.modes: dict[str, str] = {}
        self.requests = 0
        self.release = threading.Event()
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/"
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,),
                                       daemon=True)
        self.timer = threading.Timer(LIFETIME_S, self.stop)
        self.timer.daemon = True

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:  # keep test output clean
                pass

            def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
                server.requests += 1
                name = self.path.lstrip("/")
                if name not in server.files:
                    self.send_error(404, "no such file")
                    return
                body, mode = server.files[name], server.modes.get(name, "ok")
                self.send_response(200)
                self.send_header("Content-Type", "application/octet-stream")
                if mode == "chunked_cut":
                    self.send_header("Transfer-Encoding", "chunked")
                    self.end_headers()
                    half = body[:len(body) // 2]
                    self.wfile.write(f"{len(half):x}\r\n".encode() + half + b"\r\n")
                    self.wfile.flush()
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if mode == "stall":
                    server.release.wait(LIFETIME_S)
                    return
                self.wfile.write(body if mode == "ok" else body[:len(body) // 2])
                self.wfile.flush()
                if mode == "cut":  # drop the connection mid-body
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)

        return Handler

    def __enter__(self) -> LoopbackServer:
        self.thread.start()
        self.timer.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        """Release stalled handlers, stop serving, close the socket."""
        self.timer.cancel()
        self.release.set()
        self.httpd.shutdown()
        self.httpd.server_close()


def cifar_tarball(tmp: Path, dataset: str = "cifar10", **kw: object) -> tuple[bytes, dict]:
    """A gzipped tar of a small :func:`write_cifar` folder, as the official archive is laid out."""
    arrays = write_cifar(tmp, dataset, **kw)  # type: ignore[arg-type]
    folder = "cifar-10-batches-py" if dataset == "cifar10" else "cifar-100-python"
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        tar.add(tmp / folder, arcname=folder)
    return buf.getvalue(), arrays


def fashion_files(seed: int = 0) -> dict[str, bytes]:
    """The four Fashion-MNIST .gz files (30 train, 12 test images) as bytes, in IDX format."""
    rng = np.random.default_rng(seed)
    arrays = {"train_images": rng.integers(0, 256, (30, 28, 28), dtype=np.uint8),
              "train_labels": (np.arange(30) % 10).astype(np.uint8),
              "test_images": rng.integers(0, 256, (12, 28, 28), dtype=np.uint8),
              "test_labels": (np.arange(12) % 10).astype(np.uint8)}
    return {FILES[k] + ".gz": gzip.compress(encode_idx(a), mtime=0) for k, a in arrays.items()}


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def pin(monkeypatch: pytest.MonkeyPatch, name: str, files: dict[str, bytes],
        archive: bool) -> None:
    """Point the checksum table of ``name`` at ``files`` (the official URL is never used)."""
    remote = tuple(dl.RemoteFile(f, md5(b)) for f, b in files.items())
    monkeypatch.setitem(dl.SOURCES, name, dl.Source("http://unused.invalid/", remote, archive))


def serve_source(monkeypatch: pytest.MonkeyPatch, server: LoopbackServer, name: str,
                 files: dict[str, bytes], archive: bool) -> None:
    """Serve ``files`` and pin their checksums as ``name``'s."""
    server.files.update(files)
    pin(monkeypatch, name, files, archive)


@pytest.fixture
def isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No SPARSEFLOW_DATA/MIRROR; user and system data folders are empty ones under tmp_path."""
    monkeypatch.delenv("SPARSEFLOW_DATA", raising=False)
    monkeypatch.delenv("SPARSEFLOW_MIRROR", raising=False)
    monkeypatch.setattr(search, "user_data_root", lambda: tmp_path / "user")
    monkeypatch.setattr(search, "SYSTEM_DATA_ROOT", tmp_path / "system")
    return tmp_path


@pytest.fixture
def server() -> Iterator[LoopbackServer]:
    with LoopbackServer() as srv:
        yield srv


def leftovers(folder: Path) -> list[str]:
    """Hidden staging entries (``.<name>.*.part``) left in ``folder``."""
    return sorted(p.name for p in folder.glob(".*")) if folder.exists() else []


class Recorder:
    """A ProgressSink that remembers what it was told."""

    def __init__(self) -> None:
        self.files: list[tuple[str, int | None]] = []
        self.bytes = 0

    def start(self, label: str, total: int | None) -> None:
        self.files.append((label, total))

    def advance(self, n: int) -> None:
        self.bytes += n


def test_official_sources_are_pinned() -> None:
    # The published checksums and URLs; a change here must be deliberate.
    assert {n: [(f.name, f.md5) for f in s.files] for n, s in dl.SOURCES.items()} == {
        "fashion_mnist": [("train-images-idx3-ubyte.gz", "8d4fb7e6c68d591d4c3dfef9ec88bf0d"),
                          ("train-labels-idx1-ubyte.gz", "25c81989df183df01b3e8a0aad5dffbe"),
                          ("t10k-images-idx3-ubyte.gz", "bef4ecab320f06d8554ea6380940ec79"),
                          ("t10k-labels-idx1-ubyte.gz", "bb300cfdad3c16e7a12a480ee83cd310")],
        "cifar10": [("cifar-10-python.tar.gz", "c58f30108f718f92721af3b95e74349a")],
        "cifar100": [("cifar-100-python.tar.gz", "eb9058c3a382ffc7106e4002c42a8d85")],
    }
    assert dl.file_url(dl.SOURCES["cifar10"].base_url, "cifar-10-python.tar.gz") == \
        "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
    assert dl.SOURCES["fashion_mnist"].base_url == \
        "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"


@pytest.mark.parametrize("dataset", ["cifar10", "cifar100"])
def test_cifar_end_to_end(isolated: Path, server: LoopbackServer,
                          monkeypatch: pytest.MonkeyPatch, dataset: str) -> None:
    tarball, arrays = cifar_tarball(isolated / "src", dataset)
    name = f"{'cifar-10' if dataset == 'cifar10' else 'cifar-100'}-python.tar.gz"
    serve_source(monkeypatch, server, dataset, {name: tarball}, archive=True)
    rec = Recorder()
    result = dl.download(dataset, mirror=server.url, progress=rec)
    assert result == dl.DownloadResult("downloaded", isolated / "user" / dataset)
    assert rec.files == [(name, len(tarball))] and rec.bytes == len(tarball)
    assert leftovers(isolated / "user") == []
    b = load_data(DataConfig(name=dataset, val_fraction=0.0, normalize=False))
    assert b.source.startswith(str(isolated / "user" / dataset))
    expect = torch.from_numpy(arrays["x_test"]).reshape(-1, 3, 32, 32).float() / 255.0
    assert torch.equal(b.test.x, expect)
    assert torch.equal(b.test.y, torch.from_numpy(arrays["y_test"]))


def test_fashion_end_to_end_then_present(isolated: Path, server: LoopbackServer,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    serve_source(monkeypatch, server, "fashion_mnist", fashion_files(), archive=False)
    assert dl.download("fashion_mnist", mirror=server.url).status == "downloaded"
    dest = isolated / "user" / "fashion_mnist"
    assert sorted(p.name for p in dest.iterdir()) == sorted(f + ".gz" for f in FILES.values())
    b = load_data(DataConfig(name="fashion_mnist", val_fraction=0.0))
    assert b.source == str(dest) and b.train.x.shape == (30, 1, 28, 28)
    # Present and valid: nothing fetched (the server sees no request).
    before = server.requests
    assert dl.download("fashion_mnist", mirror=server.url).status == "present"
    assert server.requests == before == 4


def test_mirror_from_environment(isolated: Path, server: LoopbackServer,
                                 monkeypatch: pytest.MonkeyPatch) -> None:
    serve_source(monkeypatch, server, "fashion_mnist", fashion_files(), archive=False)
    monkeypatch.setenv("SPARSEFLOW_MIRROR", server.url)
    assert dl.download("fashion_mnist").status == "downloaded"


def test_file_mirror(isolated: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # An offline mirror: a folder holding the files under their official names.
    mirror = isolated / "mirror"
    mirror.mkdir()
    files = fashion_files()
    for fname, data in files.items():
        (mirror / fname).write_bytes(data)
    pin(monkeypatch, "fashion_mnist", files, archive=False)
    assert dl.download("fashion_mnist", mirror=mirror.as_uri()).status == "downloaded"
    assert load_data(DataConfig(name="fashion_mnist")).train.x.shape == (27, 1, 28, 28)


def test_force_replaces_only_its_own_entries(isolated: Path, server: LoopbackServer,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    dest = isolated / "shared"
    write_cifar(dest, seed=1)
    (dest / "notes.txt").write_text("mine")
    tarball, arrays = cifar_tarball(isolated / "src", seed=2)
    serve_source(monkeypatch, server, "cifar10", {"cifar-10-python.tar.gz": tarball}, True)
    assert dl.download("cifar10", dest=dest, mirror=server.url).status == "present"
    assert dl.download("cifar10", dest=dest, mirror=server.url, force=True).status == \
        "downloaded"
    assert (dest / "notes.txt").read_text() == "mine"
    b = load_data(DataConfig(name="cifar10", root=str(dest), val_fraction=0.0))
    assert torch.equal(b.test.y, torch.from_numpy(arrays["y_test"]))
    assert b.test.x.shape == (10, 3, 32, 32)
    assert torch.equal(load_data(DataConfig(name="cifar10", root=str(dest), normalize=False))
                       .test.x, torch.from_numpy(arrays["x_test"]).reshape(-1, 3, 32, 32)
                       .float() / 255.0)
    assert leftovers(isolated) == [] and leftovers(dest) == []


def test_unusable_copy_is_replaced(isolated: Path, server: LoopbackServer,
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    dest = isolated / "user" / "fashion_mnist"
    dest.mkdir(parents=True)
    (dest / "train-images-idx3-ubyte.gz").write_bytes(b"junk")
    serve_source(monkeypatch, server, "fashion_mnist", fashion_files(), archive=False)
    told: list[str] = []
    result = dl.download("fashion_mnist", mirror=server.url, on_unusable=told.append)
    assert result.status == "downloaded" and told == [result.previous]
    assert "has 1 of 4" in told[0]
    assert load_data(DataConfig(name="fashion_mnist")).source == str(dest)


def _assert_nothing_left(isolated: Path, dest: Path) -> None:
    assert not dest.exists(), list(dest.iterdir())
    assert leftovers(dest.parent) == []


def test_wrong_checksum(isolated: Path, server: LoopbackServer,
                        monkeypatch: pytest.MonkeyPatch) -> None:
    tarball, _ = cifar_tarball(isolated / "src")
    server.files["cifar-10-python.tar.gz"] = tarball
    monkeypatch.setitem(dl.SOURCES, "cifar10", dl.Source(
        "x", (dl.RemoteFile("cifar-10-python.tar.gz", "0" * 32),), True))
    with pytest.raises(DataError, match=f"MD5 {md5(tarball)} does not match the published "
                       f"{'0' * 32}") as err:
        dl.download("cifar10", mirror=server.url)
    assert "\n" not in str(err.value)
    _assert_nothing_left(isolated, isolated / "user" / "cifar10")


def test_failed_force_leaves_complete_copy_untouched(isolated: Path, server: LoopbackServer,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    dest = isolated / "user" / "cifar10"
    write_cifar(dest)
    before = {p: p.read_bytes() for p in dest.rglob("*") if p.is_file()}
    server.files["cifar-10-python.tar.gz"] = b"not what was published"
    monkeypatch.setitem(dl.SOURCES, "cifar10", dl.Source(
        "x", (dl.RemoteFile("cifar-10-python.tar.gz", "0" * 32),), True))
    with pytest.raises(DataError, match="does not match"):
        dl.download("cifar10", mirror=server.url, force=True)
    assert {p: p.read_bytes() for p in dest.rglob("*") if p.is_file()} == before
    assert leftovers(dest.parent) == []


def test_connection_cut_mid_body(isolated: Path, server: LoopbackServer,
                                 monkeypatch: pytest.MonkeyPatch) -> None:
    tarball, _ = cifar_tarball(isolated / "src")
    serve_source(monkeypatch, server, "cifar10", {"cifar-10-python.tar.gz": tarball}, True)
    server.modes["cifar-10-python.tar.gz"] = "cut"
    with pytest.raises(DataError, match=f"connection closed after {len(tarball) // 2} of "
                       f"{len(tarball)} bytes"):
        dl.download("cifar10", mirror=server.url)
    _assert_nothing_left(isolated, isolated / "user" / "cifar10")


def test_chunked_response_cut(isolated: Path, server: LoopbackServer,
                              monkeypatch: pytest.MonkeyPatch) -> None:
    # No Content-Length: the cut shows as an incomplete chunked body.
    tarball, _ = cifar_tarball(isolated / "src")
    serve_source(monkeypatch, server, "cifar10", {"cifar-10-python.tar.gz": tarball}, True)
    server.modes["cifar-10-python.tar.gz"] = "chunked_cut"
    with pytest.raises(DataError, match=f"connection closed after {len(tarball) // 2} bytes"):
        dl.download("cifar10", mirror=server.url)
    _assert_nothing_left(isolated, isolated / "user" / "cifar10")


def test_stalled_server_times_out(isolated: Path, server: LoopbackServer,
                                  monkeypatch: pytest.MonkeyPatch) -> None:
    serve_source(monkeypatch, server, "fashion_mnist", fashion_files(), archive=False)
    server.modes["train-images-idx3-ubyte.gz"] = "stall"
    with pytest.raises(DataError, match="timed out"):
        dl.download("fashion_mnist", mirror=server.url, timeout=0.3)
    _assert_nothing_left(isolated, isolated / "user" / "fashion_mnist")


def test_server_not_listening(isolated: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as s:  # a port that was free a moment ago and has no listener now
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(DataError, match=r"cannot reach http://127\.0\.0\.1:\d+/cifar-10-python"
                       r"\.tar\.gz \(.*refused"):
        dl.download("cifar10", mirror=f"http://127.0.0.1:{port}/")
    _assert_nothing_left(isolated, isolated / "user" / "cifar10")


def test_http_error(isolated: Path, server: LoopbackServer) -> None:
    with pytest.raises(DataError, match=r"cifar-100-python\.tar\.gz: HTTP 404"):
        dl.download("cifar100", mirror=server.url)
    _assert_nothing_left(isolated, isolated / "user" / "cifar100")


def _tar(members: list[tuple[tarfile.TarInfo, bytes]]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for info, data in members:
            info.size = len(data) if info.isfile() else 0
            tar.addfile(info, io.BytesIO(data) if info.isfile() else None)
    return buf.getvalue()


def _link(name: str, target: str) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = tarfile.SYMTYPE, target
    return info


@pytest.mark.parametrize("member, problem", [
    (tarfile.TarInfo("../evil"), "climbs out of the folder"),
    (tarfile.TarInfo("cifar-10-batches-py/../../evil"), "climbs out of the folder"),
    (tarfile.TarInfo("/tmp/evil"), "is an absolute path"),
    (_link("cifar-10-batches-py/evil", "../../evil"), "is a link or special file"),
])
def test_unsafe_tar_members_are_refused(isolated: Path, server: LoopbackServer,
                                        monkeypatch: pytest.MonkeyPatch,
                                        member: tarfile.TarInfo, problem: str) -> None:
    ok = tarfile.TarInfo("cifar-10-batches-py/readme")
    tarball = _tar([(ok, b"fine"), (member, b"pwned")])
    serve_source(monkeypatch, server, "cifar10", {"cifar-10-python.tar.gz": tarball}, True)
    with pytest.raises(DataError) as err:
        dl.download("cifar10", mirror=server.url)
    assert str(err.value).startswith(f"refusing to extract cifar-10-python.tar.gz: member "
                                     f"{member.name!r} {problem}")
    assert not list(isolated.rglob("evil")) and not Path("/tmp/evil").exists()
    _assert_nothing_left(isolated, isolated / "user" / "cifar10")


def test_verified_but_unloadable_archive(isolated: Path, server: LoopbackServer,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    write_cifar(isolated / "src")
    (isolated / "src" / "cifar-10-batches-py" / "data_batch_5").unlink()
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        tar.add(isolated / "src" / "cifar-10-batches-py", arcname="cifar-10-batches-py")
    serve_source(monkeypatch, server, "cifar10", {"cifar-10-python.tar.gz": buf.getvalue()}, True)
    with pytest.raises(DataError, match="passed their checksums but do not load: CIFAR-10 not "
                       "found .*missing data_batch_5"):
        dl.download("cifar10", mirror=server.url)
    _assert_nothing_left(isolated, isolated / "user" / "cifar10")


@pytest.mark.parametrize("kwargs, problem", [
    ({"name": "mnist1d"}, "no download for dataset 'mnist1d'; downloadable: fashion_mnist, "
                          "cifar10, cifar100"),
    ({"name": "cifar10", "mirror": "ftp://example.org/"}, "is not an http://, https:// or "
                                                          "file:// URL"),
])
def test_bad_requests(isolated: Path, kwargs: dict, problem: str) -> None:
    with pytest.raises(DataError, match=re.escape(problem)):
        dl.download(**kwargs)
    assert not (isolated / "user").exists() or leftovers(isolated / "user") == []


def test_unwritable_destination(isolated: Path) -> None:
    blocker = isolated / "file"
    blocker.write_text("a file, not a folder")
    with pytest.raises(DataError, match=f"cannot write to {re.escape(str(blocker))}"):
        dl.download("cifar10", dest=blocker / "cifar10", mirror="http://127.0.0.1:9/")
    with pytest.raises(DataError, match="exists and is not a folder"):
        dl.download("cifar10", dest=blocker)
