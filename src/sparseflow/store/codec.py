"""How the store encodes values: ISO-8601 UTC timestamps and standard JSON."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sparseflow.store.errors import StoreError
from sparseflow.utils.atomic import json_safe


def now() -> str:
    """The current time, ISO-8601 UTC with milliseconds (sorts as text)."""
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def _default(obj: Any) -> Any:
    """JSON fallback for numpy/torch scalars (``.item()``) and paths."""
    if hasattr(obj, "item"):
        value = obj.item()
        return None if isinstance(value, float) and not math.isfinite(value) else value
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"{type(obj).__name__} is not JSON-serializable")


def dumps(obj: Any) -> str:
    """Standard JSON (non-finite floats become null, as in summary.json)."""
    try:
        return json.dumps(json_safe(obj), allow_nan=False, default=_default)
    except (TypeError, ValueError) as exc:
        raise StoreError(f"cannot store {obj!r:.80} as JSON ({exc})") from exc


def number(value: Any) -> float | None:
    """A finite numeric value as float; anything else (None, text, NaN, inf) as None, as in
    the JSON copy of the row."""
    if isinstance(value, int | float) and math.isfinite(value):
        return float(value)
    return None
