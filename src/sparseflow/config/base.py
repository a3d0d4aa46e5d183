"""Shared base for all config models: frozen, strict about unknown keys, registry-checked."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class FrozenConfig(BaseModel):
    """A frozen, validated configuration block. Unknown keys are rejected."""

    model_config = ConfigDict(frozen=True, extra="forbid", validate_default=True)


def registered(kind: str, name: str) -> str:
    """Validate that ``name`` is registered in the registry of ``kind`` (plural name)."""
    from sparseflow.registry import REGISTRIES

    REGISTRIES[kind].check(name)
    return name
