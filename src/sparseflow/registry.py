"""Named component registries.

One :class:`Registry` per component kind (dataset, model, activation, init, masker, optimizer,
schedule). Components register themselves with a decorator where they are defined::

    @MODELS.register("mlp")
    def build_mlp(...): ...

Names become objects only at the edge (``build_*`` functions); everything below takes objects.
Duplicate names raise a :class:`ConfigError` at import time (naming the module that holds the
name); unknown names raise a :class:`ConfigError` listing the valid names and the closest match.
Components of the user's own modules are loaded by :mod:`sparseflow.plugins`.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterator
from typing import Any, Generic, TypeVar

from sparseflow.errors import ConfigError

T = TypeVar("T")


def closest(name: str, options: list[str]) -> str | None:
    """The option most similar to ``name`` (difflib ratio ≥ 0.5), or None."""
    hits = difflib.get_close_matches(name, options, n=1, cutoff=0.5)
    return hits[0] if hits else None


def unknown_name_message(kind: str, name: str, options: list[str]) -> str:
    """One line: the unknown name, the closest match if any, and the valid names."""
    hint = closest(name, options)
    guess = f" Did you mean {hint!r}?" if hint else ""
    return f"unknown {kind} {name!r}.{guess} Valid {kind}s: {', '.join(sorted(options))}."


class Registry(Generic[T]):
    """A mapping from names to components of one kind, filled by decorators."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, T] = {}
        self._meta: dict[str, dict[str, Any]] = {}

    def register(self, name: str, **meta: Any) -> Callable[[T], T]:
        """Decorator registering ``obj`` under ``name``; extra keywords are stored as metadata."""

        def deco(obj: T) -> T:
            if name in self._items:
                owner = getattr(self._items[name], "__module__", None) or "?"
                raise ConfigError(f"duplicate {self.kind} name {name!r}: already registered by "
                                  f"{owner}; register yours under another name")
            self._items[name] = obj
            self._meta[name] = dict(meta)
            return obj

        return deco

    def get(self, name: str) -> T:
        """The component called ``name``; ConfigError naming the valid names if unknown."""
        self.check(name)
        return self._items[name]

    def meta(self, name: str) -> dict[str, Any]:
        """Metadata given at registration (empty dict if none)."""
        self.check(name)
        return self._meta[name]

    def check(self, name: str) -> str:
        """Return ``name`` if registered, else raise ConfigError with the closest match."""
        if name not in self._items:
            # Not every near miss is a typo ('mish' is close to 'swish'): name the plugin route.
            raise ConfigError(unknown_name_message(self.kind, name, list(self._items))
                              + f" Your own {self.kind}? Load its module with --plugin MODULE.")
        return name

    def names(self) -> list[str]:
        """Registered names in registration order."""
        return list(self._items)

    def describe(self, name: str) -> str:
        """First line of the component's docstring (for ``sparseflow list``)."""
        doc = getattr(self.get(name), "__doc__", None) or ""
        return doc.strip().splitlines()[0] if doc.strip() else ""

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)


DATASETS: Registry[Any] = Registry("dataset")
MODELS: Registry[Any] = Registry("model")
ACTIVATIONS: Registry[Any] = Registry("activation")
INITS: Registry[Any] = Registry("init")
MASKERS: Registry[Any] = Registry("masker")
OPTIMIZERS: Registry[Any] = Registry("optimizer")
SCHEDULES: Registry[Any] = Registry("schedule")

#: Every registry by the plural name ``sparseflow list`` accepts.
REGISTRIES: dict[str, Registry[Any]] = {
    "datasets": DATASETS,
    "models": MODELS,
    "activations": ACTIVATIONS,
    "inits": INITS,
    "maskers": MASKERS,
    "optimizers": OPTIMIZERS,
    "schedules": SCHEDULES,
}
