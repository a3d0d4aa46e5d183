"""Study specs and their factorial expansion."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

import sparseflow  # noqa: F401
from sparseflow.config import ExperimentConfig
from sparseflow.errors import ConfigError
from sparseflow.studies import expand, fingerprint, load_spec, variant_overrides
from sparseflow.studies.spec import StudySpec


def spec_dict(**over) -> dict:
    base = {
        "name": "t",
        "base": {"data": {"name": "mnist1d", "num_samples": 600},
                 "model": {"hidden_layers": 2}, "train": {"epochs": 2, "batch_size": 64},
                 "gradflow": {"points": 3}},
        "axes": {"optim.name": ["adam", "sgd"]},
        "variants": ["NR", "BN"],
        "scsdc": {"sparse_width": 40, "dense_widths": [8, 16]},
        "seeds": 2,
    }
    return {**base, **over}


def test_expansion_counts_and_pairs() -> None:
    plan = expand(StudySpec.model_validate(spec_dict()))
    assert plan.counts() == {"cells": 4, "dense_widths": 2, "seeds": 2, "pairs": 16,
                             "sparse_runs": 16, "dense_runs": 16, "runs": 32}
    assert len({r.run_key for r in plan.runs}) == 32
    for run in plan.runs:
        cfg = ExperimentConfig.model_validate(run.config)
        assert cfg.seed == run.seed and run.kind == cfg.kind
        assert cfg.optim.name == run.cell["optim.name"]
        assert bool(cfg.model.batchnorm) == (run.cell["variant"] == "BN")
        if run.kind == "sparse":
            assert cfg.model.width == 40 and cfg.sparsity.dense_width == run.dense_width
            assert cfg.sparsity.init_policy == "dense"
        else:
            assert cfg.model.width == run.dense_width and not cfg.sparsity.is_sparse
    # each sparse run has a dense partner with the same cell, width and seed
    key = lambda r: (tuple(sorted(r.cell.items())), r.dense_width, r.seed)  # noqa: E731
    sparse = {key(r) for r in plan.runs if r.kind == "sparse"}
    dense = {key(r) for r in plan.runs if r.kind == "dense"}
    assert sparse == dense


def test_fractions_and_composed_variants() -> None:
    spec = StudySpec.model_validate(spec_dict(
        scsdc={"sparse_width": 3076, "dense_fractions": [0.1, 0.3, 0.5, 0.7, 0.9]},
        variants=["DA_L2_SC_BN"], variant_defs={"L2": {"regularization.l2": 0.002}}))
    assert spec.scsdc.widths() == [308, 923, 1538, 2153, 2768]  # the paper's dense widths
    assert variant_overrides("DA_L2_SC_BN", spec.variant_defs) == {
        "data.augment": True, "regularization.l2": 0.002, "model.skip": True,
        "model.batchnorm": True}


@pytest.mark.parametrize("over,needle", [
    ({"variants": ["BM"]}, "unknown variant 'BM'. Did you mean 'BN'?"),
    ({"scsdc": {"sparse_width": 40, "dense_widths": [80]}}, "dense width 80"),
    ({"scsdc": {"sparse_width": 40}}, "dense_widths or scsdc.dense_fractions"),
    ({"axes": {"optim.name": []}}, "has no values"),
    ({"axes": {"optim.nam": ["adam"]}}, "unknown config key 'optim.nam'"),
    ({"axes": {"model.width": [1, 2]}}, "cannot be swept"),
    ({"variant_defs": {"X": {"model.batchnorm": True}}, "variants": ["X"],
      "axes": {"model.batchnorm": [True, False]}}, "also an axis"),
    ({"base": {"sparsity": {"density": 0.5}}}, "leave sparsity"),
    ({"seeds": 0}, "seeds must be"),
])
def test_bad_specs_are_one_line_config_errors(tmp_path: Path, over: dict, needle: str) -> None:
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(spec_dict(**over)))
    with pytest.raises(ConfigError) as err:
        expand(load_spec(path))
    assert needle in str(err.value) and "\n" not in str(err.value)


def test_fingerprint_stable_under_growth_and_sensitive_to_base() -> None:
    a = StudySpec.model_validate(spec_dict())
    grown = StudySpec.model_validate(spec_dict(seeds=5, variants=["NR", "BN", "L2"],
                                               axes={"optim.name": ["adam", "sgd", "rmsprop"]}))
    assert fingerprint(a) == fingerprint(grown)
    other = spec_dict()
    other["base"] = {**other["base"], "train": {"epochs": 3, "batch_size": 64}}
    assert fingerprint(StudySpec.model_validate(other)) != fingerprint(a)
