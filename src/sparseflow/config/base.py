"""Shared base for all config models: frozen, strict about unknown keys, registry-checked.

Two number rules hold for every field of every config model, here rather than per field:
non-finite floats (``inf``, ``nan``) are refused (``allow_inf_nan=False``; they would pass a
``gt=0`` bound and break training or the JSON of the run later), and a boolean is not a number
(pydantic would turn ``width: true`` into 1).
"""

from __future__ import annotations

from functools import cache
from typing import Any, get_args

from pydantic import BaseModel, ConfigDict, ValidationInfo, field_validator


def _mentions(annotation: Any, kind: type) -> bool:
    """True when ``annotation`` is ``kind`` or contains it (``bool | None``, ``dict[str, int]``)."""
    if annotation is kind:
        return True
    return any(_mentions(a, kind) for a in get_args(annotation))


def _bools_in(value: Any) -> bool:
    """True when ``value`` is a bool or a list/tuple/dict holding one (one level down)."""
    if isinstance(value, bool):
        return True
    if isinstance(value, list | tuple):
        return any(isinstance(v, bool) for v in value)
    if isinstance(value, dict):
        return any(isinstance(v, bool) for v in value.values())
    return False


class FrozenConfig(BaseModel):
    """A frozen, validated configuration block. Unknown keys are rejected, numbers must be
    finite, and booleans are accepted only by boolean fields."""

    model_config = ConfigDict(frozen=True, extra="forbid", validate_default=True,
                              allow_inf_nan=False)

    @field_validator("*", mode="before")
    @classmethod
    def _no_bool_as_number(cls, value: Any, info: ValidationInfo) -> Any:
        # The value test first: it is cheap, and most values hold no boolean (a study plan
        # validates every field of every run's config).
        if _bools_in(value) and _numeric_not_bool(cls, info.field_name or ""):
            raise ValueError(f"{value!r} is or holds a boolean, not a number; write a number")
        return value


@cache
def _numeric_not_bool(model: type[BaseModel], field_name: str) -> bool:
    """True when the field's annotation admits numbers but not booleans (per model and field)."""
    ann = getattr(model.model_fields.get(field_name), "annotation", None)
    numeric = _mentions(ann, int) or _mentions(ann, float)
    return numeric and not _mentions(ann, bool)


def registered(kind: str, name: str) -> str:
    """Validate that ``name`` is registered in the registry of ``kind`` (plural name)."""
    from sparseflow.registry import REGISTRIES

    REGISTRIES[kind].check(name)
    return name
