"""The README's config reference, generated from the field help of the config models.

``python -m sparseflow.config.reference`` prints it; a test checks that the README holds
exactly this text between its ``<!-- config-reference -->`` markers.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from sparseflow.config.schema import ExperimentConfig


def _type_name(annotation: Any) -> str:
    text = getattr(annotation, "__name__", None) or str(annotation)
    return text.replace("typing.", "").replace("NoneType", "None")


def _default(field: Any) -> str:
    value = field.get_default(call_default_factory=True)
    return "" if isinstance(value, BaseModel) else f"`{value!r}`"


def rows(model: type[BaseModel] = ExperimentConfig, prefix: str = "") -> list[tuple[str, ...]]:
    """(dotted key, type, default, help) for every leaf field, depth first."""
    out: list[tuple[str, ...]] = []
    for name, field in model.model_fields.items():
        key = f"{prefix}{name}"
        ann = field.annotation
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            out.extend(rows(ann, f"{key}."))
            continue
        out.append((key, _type_name(ann), _default(field), field.description or ""))
    return out


def markdown() -> str:
    """The reference as a Markdown table."""
    lines = ["| key | type | default | meaning |", "|---|---|---|---|"]
    for key, typ, default, help_ in rows():
        lines.append(f"| `{key}` | {typ} | {default} | {help_.replace('|', '/')} |")
    return "\n".join(lines)


if __name__ == "__main__":
    print(markdown())
