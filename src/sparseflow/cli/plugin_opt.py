"""The ``--plugin`` option shared by the commands that build configs."""

from __future__ import annotations

import typer


def plugin_option() -> list[str]:
    """``--plugin MODULE`` (repeatable): modules importing which registers components."""
    return typer.Option([], "--plugin", help="Module registering your own components, e.g. "
                        "mypkg.components (repeatable; imported here and in every worker; "
                        "installed 'sparseflow.plugins' entry points load anyway).")


def load(plugins: list[str]) -> list[str]:
    """Load the entry-point plugins and ``plugins``, before any config is validated."""
    from sparseflow.plugins import load_plugins

    return load_plugins(plugins)
