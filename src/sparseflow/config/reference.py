"""The README's config reference, generated from the field help of the config models.

``python -m sparseflow.config.reference`` prints it; a test checks that the README holds
exactly this text between its ``<!-- config-reference -->`` markers.
"""

from __future__ import annotations

from typing import Any, Literal, get_args, get_origin

from pydantic import BaseModel

from sparseflow.config.schema import ExperimentConfig


def _type_name(annotation: Any) -> str:
    if get_origin(annotation) is Literal:
        return "one of " + ", ".join(f"`{a}`" for a in get_args(annotation))
    text = getattr(annotation, "__name__", None) or str(annotation)
    # "|" would end a Markdown table cell.
    return text.replace("typing.", "").replace("NoneType", "None").replace(" | ", " or ")


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


START, END = "<!-- config-reference:start -->", "<!-- config-reference:end -->"


def sync_readme(text: str) -> str:
    """``text`` (a README) with the block between the markers replaced by :func:`markdown`."""
    head, sep, rest = text.partition(START)
    _, sep2, tail = rest.partition(END)
    if not (sep and sep2):
        raise ValueError("README lacks the config-reference markers")
    return f"{head}{START}\n{markdown()}\n{END}{tail}"


if __name__ == "__main__":
    import sys

    if sys.argv[1:2] == ["--write"]:
        from pathlib import Path

        path = Path(sys.argv[2] if len(sys.argv) > 2 else "README.md")
        path.write_text(sync_readme(path.read_text()))
    else:
        print(markdown())
