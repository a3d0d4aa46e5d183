"""How the store encodes values: ISO-8601 UTC timestamps and standard JSON.

Non-finite floats (a diverged run's loss) are spelled "inf", "-inf", "nan" in the JSON text, as in
the run directory's files (:func:`sparseflow.utils.atomic.json_safe`); :func:`loads` reads them
back as floats.
"""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sparseflow.store.errors import StoreError
from sparseflow.utils.atomic import json_loads, json_safe


def now() -> str:
    """The current time, ISO-8601 UTC with milliseconds (sorts as text)."""
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def _default(obj: Any) -> Any:
    """JSON fallback for numpy/torch scalars (``.item()``) and paths."""
    if hasattr(obj, "item"):
        return json_safe(obj.item())
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"{type(obj).__name__} is not JSON-serializable")


def dumps(obj: Any) -> str:
    """Standard JSON (non-finite floats spelled as text, as in summary.json)."""
    try:
        return json.dumps(json_safe(obj), allow_nan=False, default=_default)
    except (TypeError, ValueError) as exc:
        raise StoreError(f"cannot store {obj!r:.80} as JSON ({exc})") from exc


def loads(text: str | bytes) -> Any:
    """Parse what :func:`dumps` wrote, non-finite floats decoded back to floats."""
    return json_loads(text)


def number(value: Any) -> float | None:
    """A numeric value as float for a REAL column: ±inf kept; None, text and NaN as None
    (SQLite stores NaN as NULL; the row's JSON copy keeps the NaN)."""
    if isinstance(value, int | float) and not math.isnan(value):
        return float(value)
    return None
