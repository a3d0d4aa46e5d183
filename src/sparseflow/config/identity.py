"""Run identity: a hash of the canonical config.

The canonical form keeps only values that differ from their defaults, recursively, with sorted
keys. Adding a field with a default that changes nothing therefore keeps every old id; ``name``
and ``seed`` are excluded (a label and a replicate index, not a different experiment), and so is
``train.log`` (a TensorBoard log observes a run without changing it) and ``train.eval_val`` /
``train.eval_test`` (evaluation runs in eval mode without randomness: it never changes training),
and a ``sparsity.backend`` that is not in force (a dense run's, see
:attr:`~sparseflow.config.schema.SparsityConfig.effective_backend`).
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from pydantic import BaseModel

from sparseflow.config.schema import ExperimentConfig

#: Top-level fields that never enter the id.
_NOT_IDENTITY = frozenset({"name", "seed"})
#: (section, field) pairs that never enter the id: observation only, they change no result, so
#: turning them on for an existing run or study finds the same runs.
_NOT_IDENTITY_NESTED = frozenset({("train", "log"), ("train", "eval_val"),
                                  ("train", "eval_test")})


def _jsonable(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return {k: _jsonable(v) for k, v in value.model_dump().items()}
    if isinstance(value, tuple | list):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    return value


def non_default(model: BaseModel) -> dict[str, Any]:
    """The fields of ``model`` whose values differ from the field defaults, recursively."""
    out: dict[str, Any] = {}
    for name in type(model).model_fields:
        value = getattr(model, name)
        if isinstance(value, BaseModel):
            sub = non_default(value)
            if sub:
                out[name] = sub
            continue
        jv = _jsonable(value)
        if jv != _default(type(model), name):
            out[name] = jv
    return out


#: (config class, field) → the field's default in JSON-able form. Config classes and their
#: defaults are fixed once defined; caching them makes hashing a large plan's configs ~2× faster.
_DEFAULTS: dict[tuple[type[BaseModel], str], Any] = {}


def _default(cls: type[BaseModel], name: str) -> Any:
    key = (cls, name)
    if key not in _DEFAULTS:
        _DEFAULTS[key] = _jsonable(cls.model_fields[name].get_default(call_default_factory=True))
    return _DEFAULTS[key]


def canonical(cfg: ExperimentConfig) -> dict[str, Any]:
    """The canonical (non-default, id-relevant) form of an experiment config."""
    out = {k: v for k, v in non_default(cfg).items() if k not in _NOT_IDENTITY}
    dropped = set(_NOT_IDENTITY_NESTED)
    if cfg.sparsity.effective_backend != cfg.sparsity.backend:
        dropped.add(("sparsity", "backend"))  # a dense run: the backend is not in force
    for section, name in dropped:
        sub = out.get(section)
        if isinstance(sub, dict) and name in sub:
            sub = {k: v for k, v in sub.items() if k != name}
            if sub:
                out[section] = sub
            else:
                del out[section]
    return out


def canonical_json(cfg: ExperimentConfig) -> str:
    """Canonical form as compact JSON with sorted keys (the bytes that are hashed)."""
    return json.dumps(canonical(cfg), sort_keys=True, separators=(",", ":"), allow_nan=False)


def config_id(cfg: ExperimentConfig) -> str:
    """12 hex digits of the SHA-256 of the canonical JSON; identical for all seeds."""
    return hashlib.sha256(canonical_json(cfg).encode()).hexdigest()[:12]


def run_name(cfg: ExperimentConfig) -> str:
    """Directory name of one run: ``<config id>-s<seed>``."""
    return f"{config_id(cfg)}-s{cfg.seed}"
