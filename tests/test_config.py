"""Configs: validation, overrides, YAML errors, canonical identity (pinned ids)."""

from __future__ import annotations

from pathlib import Path

import pytest

import sparseflow  # noqa: F401
from sparseflow.config import (
    ExperimentConfig,
    build_config,
    canonical,
    canonical_json,
    config_id,
    load_config,
    run_name,
)
from sparseflow.errors import ConfigError


def test_defaults_are_valid_and_frozen() -> None:
    cfg = ExperimentConfig()
    assert cfg.data.name == "mnist1d" and cfg.kind == "dense"
    with pytest.raises(Exception):  # noqa: B017 - pydantic raises its own frozen error
        cfg.seed = 3  # type: ignore[misc]


def test_dotted_overrides_parse_values() -> None:
    cfg = build_config({}, ["optim.lr=0.1", "model.batchnorm=true", "optim.betas=[0.8, 0.9]",
                            "sparsity.density=0.25", "optim.schedule.name=cosine"])
    assert cfg.optim.lr == 0.1 and cfg.model.batchnorm is True
    assert cfg.optim.betas == (0.8, 0.9) and cfg.sparsity.density == 0.25
    assert cfg.optim.schedule.name == "cosine" and cfg.kind == "sparse"


@pytest.mark.parametrize("overrides,needle", [
    (["optim.name=adamm"], "unknown optimizer 'adamm'. Did you mean 'adam'?"),
    (["optim.lr=-0.1"], "invalid optim.lr = -0.1"),
    (["sparsity.density=1.5"], "invalid sparsity.density = 1.5"),
    (["sparsity.density=0"], "invalid sparsity.density = 0"),
    (["optim.learning_rate=0.1"], "unknown config key 'optim.learning_rate'"),
    (["model.activation=relux"], "unknown activation 'relux'"),
    (["optim.lr"], "is not key=value"),
    (["data.name=cifar"], "unknown dataset 'cifar'"),
])
def test_bad_values_give_one_line(overrides: list[str], needle: str) -> None:
    with pytest.raises(ConfigError) as err:
        build_config({}, overrides)
    assert needle in str(err.value)
    assert "\n" not in str(err.value)


def test_unknown_key_suggests_closest() -> None:
    with pytest.raises(ConfigError, match="did you mean 'optim.lr'"):
        build_config({"optim": {"lrr": 0.1}})


def test_yaml_syntax_error_names_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("optim:\n  lr: 0.1\n  name: [adam\n")
    with pytest.raises(ConfigError) as err:
        load_config(bad)
    assert "YAML syntax error" in str(err.value) and "line" in str(err.value)


def test_missing_file() -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_config("does/not/exist.yaml")


def test_canonical_keeps_only_non_defaults() -> None:
    cfg = build_config({"name": "x", "seed": 4, "optim": {"lr": 0.01, "name": "adam"}})
    assert canonical(cfg) == {"optim": {"name": "adam"}}  # lr 0.01 is the default


def test_id_ignores_seed_name_and_explicit_defaults() -> None:
    a = build_config({"optim": {"name": "adam"}})
    b = build_config({"name": "other", "seed": 7,
                      "optim": {"name": "adam", "lr": 0.01}, "data": {"name": "mnist1d"}})
    assert config_id(a) == config_id(b)
    assert run_name(b) == f"{config_id(b)}-s7"
    c = build_config({"optim": {"name": "adam", "lr": 0.001}})
    assert config_id(c) != config_id(a)


def test_canonical_json_bytes() -> None:
    cfg = build_config({}, ["sparsity.density=0.1", "model.batchnorm=true",
                            "regularization.l2=0.0005"])
    assert canonical_json(cfg) == ('{"model":{"batchnorm":true},"regularization":{"l2":0.0005},'
                                   '"sparsity":{"density":0.1}}')


def test_pinned_ids() -> None:
    # These ids are a contract: stores of old studies refer to them. A change here means
    # existing run directories would no longer be found.
    assert config_id(ExperimentConfig()) == "44136fa355b3"
    assert config_id(build_config({}, ["optim.name=adam", "optim.lr=0.001"])) == "a7ba211abaa0"
    assert config_id(build_config({}, ["sparsity.density=0.1", "model.batchnorm=true",
                                       "regularization.l2=0.0005"])) == "42b8e0096225"


@pytest.mark.parametrize("path", sorted((Path(__file__).parents[1] / "configs").glob("*.yaml")),
                         ids=lambda p: p.name)
def test_every_example_config_validates(path: Path) -> None:
    from sparseflow.config.io import read_yaml

    cfg = build_config(read_yaml(path))
    assert cfg.name == read_yaml(path)["name"]
