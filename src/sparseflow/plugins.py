"""User plugins: modules that register components (activations, models, ...) in the registries.

A component registered in the user's own module exists only in the processes that imported the
module. Plugins are how every process of a run or study imports it: the driver (before configs
are validated, so a spec naming ``"mish"`` validates), the local pool's spawned workers (their
initializer), and Ray tasks (before they build anything). Two ways to name them:

- explicitly: ``--plugin mypkg.components`` on the CLI (repeatable), ``plugins: [...]`` in a
  study spec, or :func:`load_plugins` from Python;
- installed: an entry point in the group ``sparseflow.plugins`` of any installed distribution
  (``[project.entry-points."sparseflow.plugins"] mine = "mypkg.components"``), naming a module
  to import or a callable to call once per process.

Loading is idempotent per process: a module is imported once (Python caches it) and an
entry-point callable is called once.
"""

from __future__ import annotations

import importlib
import types
from collections.abc import Iterable
from importlib.metadata import EntryPoint, entry_points

from sparseflow.errors import ConfigError

#: The entry-point group scanned in every process that loads plugins.
ENTRY_POINT_GROUP = "sparseflow.plugins"

#: Modules loaded explicitly in this process, in load order (handed on to workers).
_LOADED: list[str] = []
#: Entry points (by ``name = value``) already loaded in this process.
_ENTRY_POINTS_DONE: set[str] = set()

_FIX = "check the module name and that it is installed or on PYTHONPATH"


class PluginError(ConfigError):
    """A plugin cannot be imported, or it registers a name that already exists."""


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def _import(module: str, what: str) -> types.ModuleType:
    """Import ``module``; PluginError (one line, with the fix) if it cannot be."""
    try:
        return importlib.import_module(module)
    except ConfigError as exc:  # e.g. a duplicate registry name raised at the module's import
        raise PluginError(f"{what} {module!r}: {_one_line(exc)}") from None
    except Exception as exc:  # noqa: BLE001 - any import-time failure is the plugin's problem
        # A missing module is a name or installation problem; any other error is in its code.
        fix = _FIX if isinstance(exc, ImportError) else "fix the error in the plugin's module"
        raise PluginError(f"cannot import {what} {module!r}: {type(exc).__name__}: "
                          f"{_one_line(exc)}; {fix}") from None


def check_name(module: str) -> str:
    """``module`` stripped, if it is a dotted module name; else PluginError saying so."""
    name = module.strip() if isinstance(module, str) else ""
    if not name or any(not part.isidentifier() for part in name.split(".")):
        raise PluginError(f"plugin {module!r} is no module name; give a dotted Python module "
                          "name such as mypkg.components (not a file path)")
    return name


def load_modules(modules: Iterable[str]) -> list[str]:
    """Import each of ``modules`` (dotted names) once, in order; returns the names.

    Raises PluginError with one line when a module cannot be imported or registers a name
    that already exists.
    """
    names = [check_name(m) for m in modules]
    for name in names:
        _import(name, "plugin")
        if name not in _LOADED:
            _LOADED.append(name)
    return names


def _load_entry_point(ep: EntryPoint) -> None:
    key = f"{ep.name} = {ep.value}"
    if key in _ENTRY_POINTS_DONE:
        return
    what = f"plugin {ep.name!r} (entry point {ENTRY_POINT_GROUP})"
    _import(ep.module, what)  # the one-line error for a missing module
    try:
        obj = ep.load()
        if callable(obj) and not isinstance(obj, types.ModuleType):
            obj()
    except ConfigError as exc:
        raise PluginError(f"{what}: {_one_line(exc)}") from None
    except Exception as exc:  # noqa: BLE001 - the plugin's own failure, as one line
        raise PluginError(f"{what} failed: {type(exc).__name__}: {_one_line(exc)}; "
                          f"fix or uninstall the distribution that declares {key!r}") from None
    _ENTRY_POINTS_DONE.add(key)


def load_entry_points() -> list[str]:
    """Load every entry point of the ``sparseflow.plugins`` group once; returns their names."""
    eps = sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda ep: ep.name)
    for ep in eps:
        _load_entry_point(ep)
    return [ep.name for ep in eps]


def load_plugins(modules: Iterable[str] = ()) -> list[str]:
    """Load the installed entry-point plugins and import ``modules``; returns the modules.

    Call it before building configs that name plugin components. The modules are remembered,
    so a study started from this process (:func:`~sparseflow.studies.run_study`) imports them
    in its workers as well.
    """
    load_entry_points()
    return load_modules(modules)


def loaded_plugins() -> list[str]:
    """The modules loaded explicitly in this process so far, in load order."""
    return list(_LOADED)


def merge(*lists: Iterable[str]) -> list[str]:
    """The modules of ``lists`` in order, each once."""
    out: list[str] = []
    for modules in lists:
        out.extend(m for m in modules if m not in out)
    return out
