"""Whether a study trains a group of same-shape runs batched or one by one: decided once per
group shape and kept in the study directory, so that the decision never depends on the load.

A batched group and the same runs trained alone agree to float rounding, not bitwise. With
``--vectorize auto`` the first worker to meet a group shape (a shape key and a member count)
measures both ways (:func:`~sparseflow.studies.timing.group_pays`) and records the result in
``runs/_batching/``; every later group of that shape, in this invocation or a later one (a
resume), follows the record instead of measuring again. Without the record a group measured
under heavy load could be trained the other way on a resume, and its runs would differ from a
first attempt in the last bits. ``--vectorize on`` batches every group without measuring
(records say so), which makes a study's numbers independent of the machine's load; ``off``
forms no groups. Records of one mode never steer another: switching to ``auto`` drops the
records ``on`` wrote, and ``on`` overwrites measured ones.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from pathlib import Path

from sparseflow.config import dump_config
from sparseflow.config.schema import ExperimentConfig
from sparseflow.train.vectorized import shape_key
from sparseflow.utils.atomic import atomic_write_json, create_json_once, read_json

#: Where the decisions live, under a study's ``runs/`` (beside ``_groups/``).
BATCHING_DIR = "_batching"
#: The ``--vectorize`` modes, in the order the CLI lists them.
MODES: tuple[str, ...] = ("auto", "on", "off")
MEASURED, FORCED = "measured", "--vectorize on"


def decision_path(runs_dir: str | Path, cfgs: Sequence[ExperimentConfig]) -> Path:
    """The record of the group shape of ``cfgs``: its shape key and member count."""
    key = shape_key(dump_config(cfgs[0]))
    digest = hashlib.sha256(key.encode()).hexdigest()[:16]
    return Path(runs_dir) / BATCHING_DIR / f"{digest}-k{len(cfgs)}.json"


def force(runs_dir: str | Path, groups: Sequence[Sequence[ExperimentConfig]]) -> None:
    """``--vectorize on``, before a study's workers start: record every group of several
    runs as batched (over any measured record of its shape)."""
    for cfgs in groups:
        if len(cfgs) > 1:
            atomic_write_json(decision_path(runs_dir, cfgs), {"batched": True, "how": FORCED},
                              durable=False)


def drop_forced(runs_dir: str | Path) -> None:
    """``--vectorize auto``, before a study's workers start: delete the records ``on`` wrote,
    so their group shapes are measured (measured records stay)."""
    folder = Path(runs_dir) / BATCHING_DIR
    for path in folder.glob("*.json") if folder.is_dir() else ():
        if _record(path).get("how") != MEASURED:
            path.unlink(missing_ok=True)


def decide(runs_dir: str | Path, cfgs: Sequence[ExperimentConfig],
           measure: Callable[[], bool]) -> bool:
    """Whether to batch ``cfgs``: the study's record of their group shape, else ``measure()``
    recorded (if another worker recorded first meanwhile, its decision wins)."""
    path = decision_path(runs_dir, cfgs)
    recorded = _batched(path)
    if recorded is not None:
        return recorded
    batched = measure()
    if create_json_once(path, {"batched": batched, "how": MEASURED}):
        return batched
    theirs = _batched(path)
    return batched if theirs is None else theirs


def _record(path: Path) -> dict:
    """The record at ``path`` ({} when there is none or it is not ours: measure anew)."""
    try:
        record = read_json(path)
    except (OSError, ValueError):
        return {}
    return record if isinstance(record, dict) else {}


def _batched(path: Path) -> bool | None:
    value = _record(path).get("batched")
    return value if isinstance(value, bool) else None
