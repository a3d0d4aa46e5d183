"""Study specs that mean nothing, or too much, are refused when they are read."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import yaml

import sparseflow  # noqa: F401
from sparseflow.errors import ConfigError
from sparseflow.presets import PRESETS, SCALES, preset_path
from sparseflow.studies import expand, load_spec
from sparseflow.studies.plan import DEFAULT_MAX_RUNS, check_size
from sparseflow.studies.spec import StudySpec

from tests.conftest import expanded_preset
from tests.test_cli import _assert_one_line_error, _run
from tests.test_studies_plan import spec_dict


def _load(tmp_path: Path, **over) -> StudySpec:
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(spec_dict(**over)))
    return load_spec(path)


@pytest.mark.parametrize("scsdc,needle", [
    ({"sparse_width": 40, "dense_fractions": [-0.5]}, "scsdc.dense_fractions"),
    ({"sparse_width": 40, "dense_fractions": [0.0]}, "scsdc.dense_fractions"),
    ({"sparse_width": 40, "dense_fractions": [1.5]}, "scsdc.dense_fractions"),
    ({"sparse_width": 40, "dense_fractions": [".nan"]}, "scsdc.dense_fractions"),
    ({"sparse_width": 40, "dense_fractions": []}, "scsdc.dense_fractions"),
    ({"sparse_width": 40, "dense_widths": []}, "scsdc.dense_widths"),
    ({"sparse_width": 40, "dense_widths": [8, 8]}, "scsdc.dense_widths"),
    # 0.1 and 0.11 of 40 both round to 4: the same runs twice
    ({"sparse_width": 40, "dense_fractions": [0.1, 0.11]}, "round to repeated"),
])
def test_meaningless_dense_lists_name_the_field(tmp_path: Path, scsdc, needle) -> None:
    with pytest.raises(ConfigError, match=needle.replace(".", r"\.")):
        _load(tmp_path, scsdc=scsdc)


def test_fractions_at_the_edges_are_accepted(tmp_path: Path) -> None:
    spec = _load(tmp_path, scsdc={"sparse_width": 40, "dense_fractions": [0.01, 1.0]})
    assert spec.scsdc.widths() == [1, 40]


def test_unknown_variant_is_one_short_line(tmp_path: Path, capsys) -> None:
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(spec_dict(variants=["NR", "BNN"])))
    code, _, err = _run(["study", "plan", str(path)], capsys)
    _assert_one_line_error(code, err, "unknown variant 'BNN'")
    line = err.strip()
    assert "Did you mean 'BN'?" in line and "NR, SC, WD" in line
    assert "base" not in line and "mnist1d" not in line  # the spec is not quoted
    assert len(line) < 200 + len(str(path))


def test_unknown_part_of_a_composed_variant_names_both(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"unknown variant 'BM'.*in 'DA_BM'"):
        _load(tmp_path, variants=["DA_BM"])


def test_variants_with_the_same_overrides_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"variants 'BN' and 'MYBN'"):
        _load(tmp_path, variants=["NR", "BN", "MYBN"],
              variant_defs={"MYBN": {"model.batchnorm": True}})
    # redefining a built-in onto another one's meaning
    with pytest.raises(ConfigError, match=r"variants 'NR' and 'L2'"):
        _load(tmp_path, variants=["NR", "L2"], variant_defs={"L2": {}})
    with pytest.raises(ConfigError, match="listed twice"):
        _load(tmp_path, variants=["NR", "NR"])


def test_overrides_that_give_one_config_are_refused_at_expansion(tmp_path: Path) -> None:
    # regularization.l2=0 is the default: OFF means NR, though the overrides differ.
    spec = _load(tmp_path, variants=["NR", "OFF"],
                 variant_defs={"OFF": {"regularization.l2": 0.0}})
    with pytest.raises(ConfigError, match=r"variant=NR.*variant=OFF.*same runs"):
        expand(spec)


def test_run_count_is_the_expansions_size(tmp_path: Path) -> None:
    spec = _load(tmp_path, seeds=[0, 3], scsdc={"sparse_width": 40, "dense_widths": [8, 16]})
    assert spec.run_count() == 2 * 2 * 2 * 2 * 2 == len(expand(spec).runs)


def _huge(tmp_path: Path) -> Path:
    path = tmp_path / "huge.yaml"
    path.write_text(yaml.safe_dump(spec_dict(
        axes={"optim.lr": [round(0.001 * (i + 1), 6) for i in range(100)],
              "optim.name": ["adam", "sgd", "rmsprop", "adagrad", "momentum"]},
        variants=["NR", "BN", "L2", "DA", "SC"], seeds=50,
        scsdc={"sparse_width": 40, "dense_widths": [4, 8, 12, 16]})))
    return path


def test_runaway_spec_is_refused_from_its_sizes(tmp_path: Path, capsys) -> None:
    n = 100 * 5 * 5 * 4 * 50 * 2  # 10^6 runs
    spec = load_spec(_huge(tmp_path))
    assert spec.run_count() == n
    with pytest.raises(ConfigError, match="1,000,000 runs"):
        expand(spec)
    for argv in (["study", "plan", str(_huge(tmp_path))],
                 ["study", "run", str(_huge(tmp_path)), "--dir", str(tmp_path / "d")]):
        code, _, err = _run(argv, capsys)
        _assert_one_line_error(code, err, "1,000,000 runs")
        assert f"--max-runs {n}" in err
    assert not (tmp_path / "d").exists()
    assert check_size(spec, max_runs=n) == n  # a raised limit lets it through


def test_bad_max_runs_and_jobs_are_one_line(tmp_path: Path, capsys) -> None:
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(spec_dict()))
    code, _, err = _run(["study", "plan", str(path), "--max-runs", "0"], capsys)
    _assert_one_line_error(code, err, "--max-runs must be ≥ 1")
    code, _, err = _run(["study", "run", str(path), "--dir", str(tmp_path / "d"), "--jobs",
                         "0"], capsys)
    _assert_one_line_error(code, err, "--jobs must be ≥ 1, got 0")
    code, _, err = _run(["reproduce", "bn", "--jobs", "0", "--dir", str(tmp_path / "r")],
                        capsys)
    _assert_one_line_error(code, err, "--jobs must be ≥ 1, got 0")
    assert not (tmp_path / "d").exists() and not (tmp_path / "r").exists()


@pytest.mark.parametrize("scale", SCALES)
def test_every_preset_fits_the_default_limit(scale: str) -> None:
    for name in PRESETS:
        spec = load_spec(preset_path(name, scale))
        assert spec.run_count() <= DEFAULT_MAX_RUNS
        # Sparse runs: every cell; dense twins: once per value of the axes they carry (a
        # sparsity.* axis changes only the sparse runs).
        pairs = len(spec.variants) * len(spec.scsdc.widths()) * len(spec.seed_list())
        sparse = math.prod(len(v) for v in spec.axes.values()) * pairs
        dense = math.prod(len(v) for k, v in spec.axes.items()
                          if not k.startswith("sparsity.")) * pairs
        assert spec.run_count() == sparse + dense == len(expanded_preset(name, scale).runs)
