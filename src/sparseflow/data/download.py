"""Fetch a dataset's official files, verify their checksums, and install them atomically.

Everything is staged in a hidden folder next to the destination (same filesystem, so the final
move is a rename): files are streamed there, checked against the published checksum, archives
are extracted there with path checks, and the result must load with the dataset's own loader
before it is moved into place. Any failure raises one :class:`DataError` line and removes the
staging folder; a dataset already at the destination is touched only by the final rename.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import shutil
import tarfile
import tempfile
import urllib.error
import urllib.parse
import urllib.request
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Literal, Protocol

from sparseflow.data import search
from sparseflow.errors import DataError

CHUNK = 1 << 16  # bytes per read: progress updates often, memory stays flat


@dataclass(frozen=True)
class RemoteFile:
    """One file at a source: its name (appended to the base URL) and published checksum."""

    name: str
    md5: str  #: the sources publish MD5 only; it guards against corruption and wrong files


@dataclass(frozen=True)
class Source:
    """Where a dataset's official files live and whether they are a tar archive to extract."""

    base_url: str
    files: tuple[RemoteFile, ...]
    archive: bool


#: The official sources. MD5s are the ones the authors publish (Fashion-MNIST README; the
#: CIFAR page). The Fashion-MNIST S3 website endpoint serves plain http only; the checksum is
#: what vouches for the bytes.
SOURCES: dict[str, Source] = {
    "fashion_mnist": Source(
        base_url="http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
        files=(RemoteFile("train-images-idx3-ubyte.gz", "8d4fb7e6c68d591d4c3dfef9ec88bf0d"),
               RemoteFile("train-labels-idx1-ubyte.gz", "25c81989df183df01b3e8a0aad5dffbe"),
               RemoteFile("t10k-images-idx3-ubyte.gz", "bef4ecab320f06d8554ea6380940ec79"),
               RemoteFile("t10k-labels-idx1-ubyte.gz", "bb300cfdad3c16e7a12a480ee83cd310")),
        archive=False),
    "cifar10": Source(
        base_url="https://www.cs.toronto.edu/~kriz/",
        files=(RemoteFile("cifar-10-python.tar.gz", "c58f30108f718f92721af3b95e74349a"),),
        archive=True),
    "cifar100": Source(
        base_url="https://www.cs.toronto.edu/~kriz/",
        files=(RemoteFile("cifar-100-python.tar.gz", "eb9058c3a382ffc7106e4002c42a8d85"),),
        archive=True),
}


class ProgressSink(Protocol):
    """Receives download progress (the CLI draws a bar; library calls pass nothing)."""

    def start(self, label: str, total: int | None) -> None:
        """A file of ``total`` bytes (None: unknown) begins."""

    def advance(self, n: int) -> None:
        """``n`` more bytes arrived."""


class _Silent:
    def start(self, label: str, total: int | None) -> None:
        pass

    def advance(self, n: int) -> None:
        pass


@dataclass(frozen=True)
class DownloadResult:
    """What :func:`download` did: ``status`` ``present`` (nothing fetched) or ``downloaded``;
    ``dest`` the destination folder; ``previous`` why what ``dest`` held was not usable."""

    status: Literal["present", "downloaded"]
    dest: Path
    previous: str | None = None


def default_dest(name: str) -> Path:
    """``<user data dir>/<name>``, where the loaders look (see :func:`dataset_search_dirs`)."""
    return search.user_data_root() / name


def check_dataset(name: str, folder: Path) -> None:
    """Load dataset ``name`` from ``folder`` with its registered loader; DataError if unusable."""
    from sparseflow.config.schema import DataConfig
    from sparseflow.registry import DATASETS

    DATASETS.get(name)(DataConfig(name=name, root=str(folder)))


def file_url(base: str, name: str) -> str:
    """``base`` (an http(s):// or file:// URL) joined with the file ``name``."""
    if urllib.parse.urlsplit(base).scheme not in ("http", "https", "file"):
        raise DataError(f"mirror {base!r} is not an http://, https:// or file:// URL")
    return base.rstrip("/") + "/" + name


def _cut(url: str, done: int, total: int | None) -> DataError:
    of = f" of {total}" if total is not None else ""
    return DataError(f"download failed: {url}: connection closed after {done}{of} bytes")


def fetch(url: str, path: Path, md5: str, *, timeout: float,
          progress: ProgressSink) -> None:
    """Stream ``url`` to ``path`` and verify its MD5; DataError (one line) on any failure.

    ``timeout`` (seconds) bounds the connection and every read. A body shorter than its
    Content-Length (a cut connection) is an error, as is a checksum mismatch.
    """
    digest, done, total = hashlib.md5(usedforsecurity=False), 0, None
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp, path.open("wb") as fh:
            length = resp.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() else None
            progress.start(url.rsplit("/", 1)[-1], total)
            while chunk := resp.read(CHUNK):
                fh.write(chunk)
                digest.update(chunk)
                done += len(chunk)
                progress.advance(len(chunk))
    except http.client.IncompleteRead as exc:  # some Pythons raise where others return b""
        raise _cut(url, done + len(exc.partial), total) from None
    except urllib.error.HTTPError as exc:
        raise DataError(f"download failed: {url}: HTTP {exc.code} {exc.reason}") from None
    except urllib.error.URLError as exc:
        why = "timed out" if isinstance(exc.reason, TimeoutError) else exc.reason
        raise DataError(f"download failed: cannot reach {url} ({why})") from None
    except TimeoutError:
        raise DataError(f"download failed: {url}: no data for {timeout:g} s after "
                        f"{done} bytes (timed out)") from None
    except (OSError, ValueError, http.client.HTTPException) as exc:  # reset, cut, disk full
        raise DataError(f"download failed: {url}: after {done} bytes: "
                        f"{type(exc).__name__}: {exc}") from None
    if total is not None and done != total:
        raise _cut(url, done, total)
    if digest.hexdigest() != md5:
        raise DataError(f"download failed: {url}: MD5 {digest.hexdigest()} does not match "
                        f"the published {md5} (corrupt transfer or wrong file)")


def _check_member(member: tarfile.TarInfo, archive: str) -> None:
    """Refuse members that could write outside the extraction folder (or are not plain)."""
    path = PurePosixPath(member.name)
    why = None
    if path.is_absolute() or member.name.startswith("\\"):
        why = "is an absolute path"
    elif ".." in path.parts:
        why = "climbs out of the folder (..)"
    elif not (member.isfile() or member.isdir()):
        why = "is a link or special file (the official archive holds only files and folders)"
    if why:
        raise DataError(f"refusing to extract {archive}: member {member.name!r} {why}")


def safe_extract(archive: Path, into: Path, label: str) -> None:
    """Extract the tar archive ``archive`` into ``into``, refusing unsafe members first.

    Every member is checked before anything is written; ``tarfile``'s ``data`` filter is
    applied as well where this Python has it. ``label`` names the archive in messages.
    """
    kwargs = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
    try:
        with tarfile.open(archive, "r:*") as tar:
            members = tar.getmembers()
            for member in members:
                _check_member(member, label)
            tar.extractall(into, members=members, **kwargs)  # type: ignore[arg-type]
    except (tarfile.TarError, EOFError, zlib.error) as exc:
        raise DataError(f"cannot extract {label}: {exc}") from None


def _install(tree: Path, dest: Path, aside: Path) -> None:
    """Move the staged ``tree`` to ``dest`` by renames.

    A missing ``dest`` becomes ``tree`` in one rename. Into an existing folder, each staged
    entry replaces its namesake (moved to ``aside`` first, put back if the move fails);
    other files there are left alone, so ``--dest`` may name a shared folder.
    """
    if not dest.exists():
        os.rename(tree, dest)
        return
    aside.mkdir()
    for entry in sorted(tree.iterdir()):
        target = dest / entry.name
        old = aside / entry.name
        had = target.exists() or target.is_symlink()
        if had:
            os.rename(target, old)
        try:
            os.rename(entry, target)
        except OSError:
            if had:
                os.rename(old, target)
            raise


def _fetch_into(name: str, base: str, tree: Path, stage: Path, timeout: float,
                progress: ProgressSink) -> None:
    """Download (and extract) every file of ``name`` into ``tree``."""
    src = SOURCES[name]
    for remote in src.files:
        url = file_url(base, remote.name)
        target = stage / remote.name if src.archive else tree / remote.name
        fetch(url, target, remote.md5, timeout=timeout, progress=progress)
        if src.archive:
            safe_extract(target, tree, remote.name)
            target.unlink()


def download(name: str, *, dest: str | Path | None = None, mirror: str | None = None,
             force: bool = False, timeout: float = 30.0,
             progress: ProgressSink | None = None,
             on_unusable: Callable[[str], None] | None = None) -> DownloadResult:
    """Download dataset ``name`` into ``dest`` (default ``<user data dir>/<name>``).

    Files come from ``mirror`` (a base URL), else ``$SPARSEFLOW_MIRROR``, else the official
    source. A valid copy already at ``dest`` is kept unless ``force``; if ``dest`` exists but
    does not load, ``on_unusable`` is told why before the download starts. Nothing
    half-written is ever left: on any error the staging folder is removed and ``dest`` is as
    it was.
    """
    if name not in SOURCES:
        raise DataError(f"no download for dataset {name!r}; downloadable: "
                        f"{', '.join(SOURCES)}")
    dest = Path(dest).expanduser() if dest is not None else default_dest(name)
    if dest.exists() and not dest.is_dir():
        raise DataError(f"destination {dest} exists and is not a folder")
    previous = None
    if dest.is_dir() and not force:
        try:
            check_dataset(name, dest)
            return DownloadResult("present", dest)
        except DataError as exc:
            previous = str(exc)
            if on_unusable is not None:
                on_unusable(previous)
    base = mirror or os.environ.get("SPARSEFLOW_MIRROR") or SOURCES[name].base_url
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        stage = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent))
    except OSError as exc:
        raise DataError(f"cannot write to {dest.parent}: {exc.strerror or exc}") from None
    try:
        tree = stage / "tree"
        tree.mkdir()
        _fetch_into(name, base, tree, stage, timeout, progress or _Silent())
        try:
            check_dataset(name, tree)
        except DataError as exc:
            raise DataError(f"the downloaded {name} files passed their checksums but do not "
                            f"load: {exc}") from None
        try:
            _install(tree, dest, stage / "replaced")
        except OSError as exc:
            raise DataError(f"cannot install into {dest}: {exc.strerror or exc}") from None
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    return DownloadResult("downloaded", dest, previous)
