"""``sparseflow data {download,list}``: fetch datasets and show where each one is found."""

from __future__ import annotations

from contextlib import nullcontext
from pathlib import Path
from types import TracebackType

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)
from rich.table import Table

data_app = typer.Typer(help="Datasets: download the file-based ones, list where each is found.",
                       no_args_is_help=True)


class DownloadBar:
    """A rich progress bar per file (bytes, speed, ETA); a :class:`ProgressSink`."""

    def __init__(self, console: Console) -> None:
        self.progress = Progress(
            TextColumn("[bold]{task.description}"), BarColumn(), DownloadColumn(),
            TransferSpeedColumn(), TextColumn("ETA"), TimeRemainingColumn(), console=console)
        self.task: TaskID | None = None

    def __enter__(self) -> DownloadBar:
        self.progress.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.progress.stop()

    def start(self, label: str, total: int | None) -> None:
        """A new file begins: one more bar."""
        self.task = self.progress.add_task(label, total=total)

    def advance(self, n: int) -> None:
        """``n`` more bytes of the current file."""
        if self.task is not None:
            self.progress.advance(self.task, n)


@data_app.command("download")
def download_cmd(
    name: str = typer.Argument(..., help="Dataset: fashion_mnist, cifar10 or cifar100."),
    dest: Path | None = typer.Option(None, "--dest", help="Folder to install into (default: "
                                     "<user data dir>/NAME, where the loaders look)."),
    mirror: str | None = typer.Option(None, "--mirror", help="Base URL holding the files "
                                      "under their official names (default: $SPARSEFLOW_MIRROR, "
                                      "else the official source)."),
    force: bool = typer.Option(False, "--force", help="Download even if a valid copy exists."),
    timeout: float = typer.Option(30.0, "--timeout", min=0.1, help="Seconds without data "
                                  "before giving up."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
) -> None:
    """Download NAME's official files, verify their checksums, and install them atomically."""
    from sparseflow.data.available import BUILT_IN
    from sparseflow.data.download import SOURCES, default_dest, download
    from sparseflow.errors import DataError
    from sparseflow.registry import unknown_name_message

    console = Console()
    if name in BUILT_IN:
        raise DataError(f"{name} needs no download: it is {BUILT_IN[name]}")
    if name not in SOURCES:
        raise DataError(unknown_name_message("downloadable dataset", name, list(SOURCES)))

    def unusable(why: str) -> None:
        console.print(f"no usable {name} at the destination ({why}); downloading")

    bar = DownloadBar(console)
    with nullcontext() if quiet else bar:
        result = download(name, dest=dest, mirror=mirror, force=force, timeout=timeout,
                          progress=None if quiet else bar, on_unusable=unusable)
    if result.status == "present":
        console.print(f"{name} is already present and valid at {result.dest} (nothing to do; "
                      "--force downloads it again)")
        return
    console.print(f"{name} downloaded, verified and installed at {result.dest}")
    if result.dest != default_dest(name):
        console.print(f"loaders search {result.dest} only when told: set data.root or "
                      f"SPARSEFLOW_DATA to {result.dest}")


@data_app.command("list")
def list_cmd() -> None:
    """Each registered dataset, whether it is available locally and where (loads nothing)."""
    from sparseflow.data.available import all_availability

    table = Table(title="datasets")
    table.add_column("name", style="bold")
    table.add_column("available")
    table.add_column("where")
    table.add_column("download")
    marks = {True: "yes", False: "no", None: "?"}
    for a in all_availability():
        table.add_row(a.name, marks[a.available], a.where,
                      f"sparseflow data download {a.name}" if a.downloadable else "–")
    Console().print(table)


def register(app: typer.Typer) -> None:
    """Attach the data sub-app to ``app``."""
    app.add_typer(data_app, name="data")
