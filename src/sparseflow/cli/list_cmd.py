"""``sparseflow list KIND``: the registered components of one kind."""

from __future__ import annotations

import typer
from rich.console import Console
from rich.table import Table

from sparseflow.cli.plugin_opt import load as load_plugins
from sparseflow.cli.plugin_opt import plugin_option
from sparseflow.errors import ConfigError
from sparseflow.registry import REGISTRIES, unknown_name_message


def list_components(kind: str = typer.Argument(
        ..., help=f"One of: {', '.join(REGISTRIES)}."),
        plugin: list[str] = plugin_option()) -> None:
    """List the registered components of KIND with a one-line description each."""
    import sparseflow.components  # noqa: F401  (fills the registries)

    load_plugins(plugin)

    key = kind if kind in REGISTRIES else f"{kind}s"
    if key not in REGISTRIES:
        raise ConfigError(unknown_name_message("kind", kind, list(REGISTRIES)))
    reg = REGISTRIES[key]
    table = Table(title=f"{key} ({len(reg)})", show_header=True)
    table.add_column("name", style="bold")
    table.add_column("description")
    for name in reg.names():
        table.add_row(name, reg.describe(name))
    Console().print(table)


def register(app: typer.Typer) -> None:
    """Attach the command to ``app``."""
    app.command("list")(list_components)
