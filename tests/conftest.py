"""Shared fixtures: an isolated cache for generated datasets and a tiny, fast config."""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

import pytest


@pytest.fixture(autouse=True, scope="session")
def _isolated_cache(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Generated datasets go to a per-session folder, never the user's cache."""
    mp = pytest.MonkeyPatch()
    mp.setenv("SPARSEFLOW_CACHE", str(tmp_path_factory.mktemp("cache")))
    yield
    mp.undo()


def tiny(**sections: Any) -> dict[str, Any]:
    """A small mnist1d MLP experiment (a second or two on CPU), with section overrides."""
    base: dict[str, Any] = {
        "data": {"name": "mnist1d", "num_samples": 1000, "val_fraction": 0.2},
        "model": {"width": 32, "hidden_layers": 2},
        "optim": {"name": "sgd", "lr": 0.05},
        "train": {"epochs": 3, "batch_size": 64},
    }
    for key, value in sections.items():
        base[key] = {**base.get(key, {}), **value} if isinstance(value, dict) else value
    return base


@pytest.fixture
def tiny_config() -> Any:
    """Factory for tiny experiment dicts: ``tiny_config(optim={"name": "adam"})``."""
    return tiny


@pytest.fixture(scope="session")
def cli_study(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, str]:
    """A 48-run study (2 optimizers × NR/BN × 2 widths × 3 seeds), run through the CLI once
    for the session and only read by the tests: (spec, study directory, what `study run`
    printed)."""
    import contextlib
    import io

    import yaml

    from sparseflow.cli import main

    from tests.test_studies_plan import spec_dict

    root = tmp_path_factory.mktemp("cli-study")
    spec = root / "s.yaml"
    spec.write_text(yaml.safe_dump(spec_dict(seeds=3, variants=["NR", "BN"],
                                             scsdc={"sparse_width": 40,
                                                    "dense_widths": [8, 16]})))
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        try:
            main(["study", "run", str(spec), "--dir", str(root / "study"), "--jobs", "2"])
        except SystemExit as exc:
            assert not exc.code
    return spec, root / "study", out.getvalue()


@cache
def expanded_preset(name: str, scale: str) -> Any:
    """The plan of a packaged preset, expanded once per session (a full-scale plan holds up to
    36,000 runs; several tests read the same plans and none changes one)."""
    from sparseflow import presets
    from sparseflow.studies import expand
    from sparseflow.studies.spec import load_spec

    return expand(load_spec(presets.preset_path(name, scale)))
