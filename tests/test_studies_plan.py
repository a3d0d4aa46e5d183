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


# Pairs per cell of the default table, and the warning of `study plan` ---------------------

from sparseflow.studies.power_check import cell_pairs, too_few_pairs  # noqa: E402


def test_cell_pairs_pool_widths_seeds_and_the_other_axes() -> None:
    spec = spec_dict(axes={"optim.name": ["adam", "sgd"], "optim.lr": [0.01, 0.1, 0.2]},
                     seeds=2, scsdc={"sparse_width": 40, "dense_widths": [8, 16]})
    cells = cell_pairs(expand(StudySpec.model_validate(spec)))
    # rows optim.name × cols variant; a cell pools 2 seeds × 2 widths × 3 learning rates
    assert [(c.row, c.col, c.n) for c in cells] == [
        ("adam", "NR", 12), ("adam", "BN", 12), ("sgd", "NR", 12), ("sgd", "BN", 12)]
    assert cells[0].label == "optim.name=adam / variant=NR"


def test_one_variant_tables_the_next_axis_and_pools_nothing_else() -> None:
    spec = spec_dict(axes={"optim.name": ["adam", "sgd"], "optim.lr": [0.01, 0.1]},
                     variants=["NR"], seeds=3, scsdc={"sparse_width": 40, "dense_widths": [8]})
    cells = cell_pairs(expand(StudySpec.model_validate(spec)))
    assert {(c.col_key, c.n) for c in cells} == {("optim.lr", 3)}
    assert len(cells) == 4
    mw = cell_pairs(expand(StudySpec.model_validate(spec)), test="mannwhitney")
    assert {c.n for c in mw} == {3}  # 3 sparse and 3 dense runs per cell


def test_too_few_pairs_names_the_cell_the_need_and_the_seeds() -> None:
    plan = expand(StudySpec.model_validate(spec_dict(seeds=1)))  # 1 seed × 2 widths = 2 pairs
    lines = too_few_pairs(plan)
    assert len(lines) == 4
    assert lines[0] == ("cell optim.name=adam / variant=NR has 2 pairs: a one-sided Wilcoxon "
                        "test needs ≥ 5 to reach p ≤ 0.05; add seeds (seeds: 3) or dense "
                        "widths")  # 3 seeds × 2 widths = 6 ≥ 5
    plan3 = expand(StudySpec.model_validate(spec_dict(seeds=3)))  # 6 pairs
    assert too_few_pairs(plan3) == []
    assert len(too_few_pairs(plan3, alpha=0.01)) == 4  # needs 7: 1/2^7 ≤ 0.01 < 1/2^6
    assert "paired t-test needs ≥ 3" in too_few_pairs(plan, test="ttest")[0]
    assert too_few_pairs(plan3, test="ttest") == []


def test_a_cell_of_one_dense_width_is_told_to_add_seeds_only() -> None:
    # No axis, two variants: the table is variant × dense_width, a cell holds one width.
    spec = spec_dict(axes={}, seeds=3, scsdc={"sparse_width": 40, "dense_widths": [8, 16]})
    lines = too_few_pairs(expand(StudySpec.model_validate(spec)))
    assert len(lines) == 4 and lines[0].startswith("cell variant=NR / dense_width=8 has 3 pairs")
    assert all(line.endswith("add seeds (seeds: 5)") for line in lines)


def _no_estimate(monkeypatch: pytest.MonkeyPatch) -> None:
    """The warning tests need no time estimate (it trains a little)."""
    import sparseflow.studies

    def refuse(*args, **kwargs):
        from sparseflow.errors import DataError

        raise DataError("estimate skipped in this test")

    monkeypatch.setattr(sparseflow.studies, "estimate_study", refuse)


@pytest.mark.parametrize("seeds,argv,warned", [
    (1, [], 4),
    (3, [], 0),
    (3, ["--alpha", "0.01"], 4),
    (3, ["--test", "ttest", "--alpha", "0.001"], 0),
    (1, ["--test", "mannwhitney"], 4),
])
def test_study_plan_warns_before_training(tmp_path: Path, capsys, monkeypatch,
                                          seeds: int, argv: list[str], warned: int) -> None:
    from tests.test_cli import _run

    _no_estimate(monkeypatch)
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(spec_dict(seeds=seeds)))
    code, out, err = _run(["study", "plan", str(path), *argv], capsys)
    assert code == 0, err
    flat = " ".join(out.split())
    assert flat.count("to reach p ≤") == warned
    if warned:
        assert "cell optim.name=sgd / variant=BN has" in flat
    assert "no time estimate: estimate skipped" in flat


@pytest.mark.parametrize("argv,needle", [
    (["--test", "sign"], "--test must be one of wilcoxon, ttest, mannwhitney"),
    (["--alpha", "1.5"], "--alpha must be in (0, 1)"),
    (["--jobs", "0"], "--jobs must be ≥ 1"),
    (["--vectorize", "sometimes"], "--vectorize must be one of auto, on, off"),
    (["--max-group", "0"], "--max-group must be ≥ 1"),
])
def test_study_plan_bad_options_are_one_line(tmp_path: Path, capsys, argv: list[str],
                                             needle: str) -> None:
    from tests.test_cli import _assert_one_line_error, _run

    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(spec_dict()))
    code, _, err = _run(["study", "plan", str(path), *argv], capsys)
    _assert_one_line_error(code, err, needle)
