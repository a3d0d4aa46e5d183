"""Loading configs from YAML, applying dotted overrides, and turning validation errors into
one-line messages."""

from __future__ import annotations

from pathlib import Path
from typing import Any, get_args, get_origin

import yaml
from pydantic import BaseModel, ValidationError

from sparseflow.config.schema import ExperimentConfig
from sparseflow.config.yaml_load import load_yaml_text
from sparseflow.errors import ConfigError
from sparseflow.registry import closest


def _read_text(p: Path) -> str:
    """The UTF-8 text of config file ``p``; ConfigError naming the path and the problem."""
    if p.is_dir():
        raise ConfigError(f"config {str(p)!r} is a directory; give the YAML file inside it")
    if not p.exists():
        raise ConfigError(f"config file {str(p)!r} not found; check the path")
    try:
        raw = p.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read config file {str(p)!r}: {exc.strerror or exc}; check "
                          "its permissions and the disk") from None
    if raw.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise ConfigError(f"config file {str(p)!r} is UTF-16 text; save it as UTF-8")
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise ConfigError(f"config file {str(p)!r} is not UTF-8 text (byte {exc.start} on line "
                          f"{line}); give a YAML text file saved as UTF-8") from None


def read_yaml(path: str | Path) -> dict[str, Any]:
    """Parse a YAML mapping; ConfigError with line/column on syntax errors, on duplicate keys
    and on alias bombs (see :mod:`.yaml_load`)."""
    p = Path(path)
    text = _read_text(p)
    try:
        data = load_yaml_text(text)
    except ConfigError as exc:
        raise ConfigError(f"{p}: {exc}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"YAML syntax error in {p}{where}: {problem}; fix the file") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{p} must hold a mapping of config sections (e.g. `optim: {{lr: "
                          f"0.1}}`), not a {type(data).__name__}")
    return data


def parse_value(text: str) -> Any:
    """Parse an override value with YAML rules (``0.1`` → float, ``true`` → bool, ``[1,2]``)."""
    try:
        return load_yaml_text(text)
    except yaml.YAMLError:
        return text


def apply_override(data: dict[str, Any], dotted: str, value: Any) -> dict[str, Any]:
    """Return a copy of nested ``data`` with ``dotted`` (e.g. ``optim.lr``) set to ``value``."""
    keys = dotted.split(".")
    if not all(keys):
        raise ConfigError(f"override key {dotted!r} is malformed; use e.g. optim.lr=0.1")
    out = dict(data)
    node = out
    for k in keys[:-1]:
        child = node.get(k)
        child = dict(child) if isinstance(child, dict) else {}
        node[k] = child
        node = child
    node[keys[-1]] = value
    return out


def parse_overrides(items: list[str]) -> list[tuple[str, Any]]:
    """Split ``key=value`` strings; ConfigError on a missing ``=``."""
    pairs = []
    for item in items:
        key, sep, val = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"override {item!r} is not key=value; use e.g. --set optim.lr=0.1")
        pairs.append((key.strip(), parse_value(val)))
    return pairs


def _model_in(ann: Any) -> Any:
    """The model class of an annotation: ``ann`` itself, or the model of an optional one
    (``SelectSpec | None``); else ``ann`` unchanged."""
    if isinstance(ann, type) and issubclass(ann, BaseModel):
        return ann
    models = [a for a in get_args(ann) if isinstance(a, type) and issubclass(a, BaseModel)]
    return models[0] if len(models) == 1 and type(None) in get_args(ann) else ann


def _field_names(model: type[BaseModel], loc: tuple[Any, ...]) -> list[str]:
    """Valid field names at ``loc`` (the parent of the offending key)."""
    cls: Any = model
    for part in loc:
        field = cls.model_fields.get(part) if isinstance(part, str) else None
        ann = _model_in(getattr(field, "annotation", None))
        if not (isinstance(ann, type) and issubclass(ann, BaseModel)):
            return []
        cls = ann
    return list(cls.model_fields)


def _field_help(model: type[BaseModel], loc: tuple[Any, ...]) -> str:
    """The help text of the field at ``loc`` ('' if there is none)."""
    cls: Any = model
    for i, part in enumerate(loc):
        field = cls.model_fields.get(part) if isinstance(part, str) else None
        if field is None:
            return ""
        if i == len(loc) - 1:
            return field.description or ""
        cls = _model_in(field.annotation)
        if not (isinstance(cls, type) and issubclass(cls, BaseModel)):
            return ""
    return ""


def _field_at(model: type[BaseModel], loc: tuple[Any, ...]) -> Any:
    """The pydantic FieldInfo at dotted ``loc`` (None when ``loc`` is not a field path)."""
    cls: Any = model
    field = None
    for part in loc:
        if not (isinstance(cls, type) and issubclass(cls, BaseModel)) or not isinstance(part, str):
            return None
        field = cls.model_fields.get(part)
        if field is None:
            return None
        cls = field.annotation
    return field


def _tuple_message(model: type[BaseModel], loc: tuple[Any, ...], err: dict[str, Any]) -> str | None:
    """'optim.betas needs 2 values (…)' when ``err`` is about the length of a fixed tuple."""
    if err["type"] not in ("missing", "too_long", "too_short") or not loc:
        return None
    parent = loc[:-1] if isinstance(loc[-1], int) else loc
    field = _field_at(model, parent)
    ann = getattr(field, "annotation", None)
    if get_origin(ann) is not tuple or Ellipsis in get_args(ann):
        return None
    key = ".".join(map(str, parent))
    n = len(get_args(ann))
    got = err.get("input")
    help_ = f" ({field.description})" if field.description else ""
    return f"{key} needs {n} values{help_}; got {got!r}, write e.g. {key}={list(field.default)}"


def _one_message(err: dict[str, Any], model: type[BaseModel]) -> str:
    """One pydantic error as ``invalid KEY = VALUE: problem (help)``."""
    loc = tuple(err["loc"])
    key = ".".join(str(p) for p in loc)
    if err["type"] == "extra_forbidden":
        names = _field_names(model, loc[:-1])
        hint = closest(str(loc[-1]), names)
        guess = f"; did you mean {'.'.join([*map(str, loc[:-1]), hint])!r}?" if hint else ""
        return f"unknown config key {key!r}{guess} Valid keys here: {', '.join(names)}"
    tuple_msg = _tuple_message(model, loc, err)
    if tuple_msg:
        return tuple_msg
    msg = err["msg"].removeprefix("Value error, ")
    if err["type"] == "finite_number":
        msg = "inf and nan are not allowed; write a finite number"
    # Our own validators already say what is valid; pydantic's generic messages get the help.
    help_ = "" if err["type"] == "value_error" else _field_help(model, loc)
    return f"invalid {key} = {err.get('input')!r}: {msg}" + (f" ({key}: {help_})" if help_ else "")


def validation_message(exc: ValidationError, model: type[BaseModel] = ExperimentConfig) -> str:
    """One line describing every validation error (joined by "; "), each with the fix."""
    out: list[str] = []
    for err in exc.errors():
        line = _one_message(err, model)
        if line not in out:  # a tuple with two bad elements gives the same line twice
            out.append(line)
    return "; ".join(out)


def build_config(data: dict[str, Any], overrides: list[str] | None = None,
                 seed: int | None = None) -> ExperimentConfig:
    """Validate ``data`` (plus dotted overrides and an optional seed) into an ExperimentConfig."""
    for key, value in parse_overrides(overrides or []):
        data = apply_override(data, key, value)
    if seed is not None:
        data = {**data, "seed": seed}
    try:
        return ExperimentConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(validation_message(exc)) from None


def load_config(path: str | Path | None, overrides: list[str] | None = None,
                seed: int | None = None) -> ExperimentConfig:
    """Load a YAML config (or the defaults when ``path`` is None) with overrides applied."""
    data = read_yaml(path) if path is not None else {}
    return build_config(data, overrides, seed)


def dump_config(cfg: ExperimentConfig) -> dict[str, Any]:
    """The full resolved config as plain JSON-able data."""
    return cfg.model_dump(mode="json")
