"""Small formatting helpers shared by the command line and the report."""

from __future__ import annotations


def human_duration(seconds: float) -> str:
    """'42 s', '3.5 min' or '1.25 h'."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.2f} h"
