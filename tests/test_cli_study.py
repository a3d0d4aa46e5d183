"""`sparseflow pair` and `sparseflow study …` from the command line."""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import numpy as np
import pytest
import yaml
from scipy import stats

from sparseflow.analysis.stats import RNG_KW
from sparseflow.cli import main

from tests.test_cli import _assert_one_line_error, _run
from tests.test_studies_plan import spec_dict


def test_pair_json_counts_by_hand(capsys) -> None:
    code, out, err = _run(["pair", "--sparse-width", "301", "--dense-width", "97", "--set",
                           "model.hidden_layers=4", "--json"], capsys)
    assert code == 0, err
    data = json.loads(out)
    layers = {row["name"]: row for row in data["layers"]}
    # mnist1d: 40 inputs, 10 classes. Dense twin: 40·97, 97·97 three times, 97·10.
    expected = {"hidden.0.linear.weight": 40 * 97, "hidden.1.linear.weight": 97 * 97,
                "hidden.2.linear.weight": 97 * 97, "hidden.3.linear.weight": 97 * 97,
                "out.weight": 97 * 10}
    assert {n: r["active"] for n, r in layers.items()} == expected
    assert {n: r["sparse_total"] for n, r in layers.items()} == {
        "hidden.0.linear.weight": 40 * 301, "hidden.1.linear.weight": 301 * 301,
        "hidden.2.linear.weight": 301 * 301, "hidden.3.linear.weight": 301 * 301,
        "out.weight": 301 * 10}
    assert data["totals"]["sparse_active"] == data["totals"]["dense_weights"] == sum(
        expected.values())
    # biases: 4·301 + 10 vs 4·97 + 10
    assert data["non_pruned"]["bias"] == {"sparse": 1214, "dense": 398, "difference": 816}
    assert data["init_policy"] == "dense"
    assert layers["hidden.1.linear.weight"]["init_std"] == pytest.approx((2 / 97) ** 0.5)


def test_pair_dense_wider_than_sparse_is_one_line(capsys) -> None:
    code, _, err = _run(["pair", "--sparse-width", "30", "--dense-width", "97"], capsys)
    _assert_one_line_error(code, err, "hidden.0.linear.weight")


def _export(study: Path, tmp_path: Path, capsys) -> list[dict[str, str]]:
    code, _, err = _run(["study", "export", str(study), "--out", str(tmp_path / "r.csv")],
                        capsys)
    assert code == 0, err
    return list(csv.DictReader((tmp_path / "r.csv").read_text().splitlines()))


def _pairs(rows: list[dict[str, str]], opt: str, var: str, metric: str) -> np.ndarray:
    """(sparse, dense) values of one cell from the export, paired by (dense width, seed)."""
    def value(kind: str, w: str, s: str) -> float:
        (r,) = [r for r in rows if r["kind"] == kind and r["dense_width"] == w and
                r["seed"] == s and r["optim.name"] == opt and r["variant"] == var]
        return float(r[metric])
    keys = [(w, s) for w in ("8", "16") for s in ("0", "1", "2")]
    return np.array([[value("sparse", w, s), value("dense", w, s)] for w, s in keys])


def _bca(better: np.ndarray) -> tuple[float, float]:
    """The 95% BCa CI of the mean of the better-oriented differences, as the table seeds it."""
    if np.ptp(better) == 0:
        return float(better[0]), float(better[0])
    rng = {RNG_KW: np.random.default_rng(0)}
    ci = stats.bootstrap((better,), np.mean, n_resamples=9999, method="BCa",
                         **rng).confidence_interval
    return float(ci.low), float(ci.high)


def test_study_plan_run_tests_export(cli_study, tmp_path: Path, capsys) -> None:
    spec, directory, run_out = cli_study
    code, out, _ = _run(["study", "plan", str(spec)], capsys)
    assert code == 0 and "pairs" in out and "24" in out and "estimated" in out
    flat = " ".join(run_out.split())  # rich wraps long lines at the terminal width
    assert "48 runs finished, 0 failed" in flat and "H1: sparse > dense" in flat
    assert "Is sparse better than dense on test_accuracy?" in flat
    assert "of 4 tested cells" in flat and "Largest gap:" in flat
    code, out, _ = _run(["study", "status", str(directory)], capsys)
    assert code == 0 and "finished" in out and "48" in out
    rows = _export(directory, tmp_path, capsys)
    code, out, _ = _run(["study", "tests", str(directory), "--format", "csv"], capsys)
    assert code == 0
    cells = {(r["optim.name"], r["variant"]): r for r in csv.DictReader(out.splitlines())}
    # Recompute one cell's p-value with scipy from the export: adam × BN, pairs by (width, seed).
    pairs = _pairs(rows, "adam", "BN", "test_accuracy")
    expected = stats.wilcoxon(pairs[:, 0] - pairs[:, 1], alternative="greater").pvalue
    assert float(cells[("adam", "BN")]["p_value"]) == pytest.approx(expected)
    code, out, _ = _run(["study", "correlate", str(directory), "--compare"], capsys)
    assert code == 0 and "EGF₂" in out and "24 sparse and 24 dense" in out
    assert "| EGF₂ − ‖g‖₁ |" in out and "null SE of a single τ: 0.146 (sparse, n=24)" in out


_NUM = r"([+−]?\d+(?:\.\d+)?)"


def _number(text: str) -> float:
    return float(text.replace("−", "-"))


def _close(shown: str, value: float) -> bool:
    """Whether ``shown`` is ``value`` rounded to the places it shows."""
    places = len(shown.split(".")[1]) if "." in shown else 0
    return abs(_number(shown) - value) <= 0.5 * 10**-places + 1e-9


def test_printed_gap_and_ci_equal_numpy_and_scipy_on_the_export(cli_study, tmp_path: Path, capsys,
                                                                monkeypatch) -> None:
    _, directory, _ = cli_study
    rows = _export(directory, tmp_path, capsys)
    order = [(o, v) for o in ("adam", "sgd") for v in ("NR", "BN")]
    expected = {}
    for key in order:
        pairs = _pairs(rows, *key, "test_accuracy")
        diffs = pairs[:, 0] - pairs[:, 1]  # sparse − dense, accuracy as a fraction
        low, high = _bca(diffs)
        p = stats.wilcoxon(np.round(diffs, 12), alternative="greater").pvalue
        expected[key] = (100 * diffs.mean(), 100 * low, 100 * high, p)
    monkeypatch.setenv("COLUMNS", "80")
    code, out, err = _run(["study", "tests", str(directory)], capsys)
    assert code == 0, err
    assert all(len(line) <= 80 for line in out.splitlines())
    grid = [ln for ln in out.splitlines() if ln.startswith("│")]
    gaps = re.findall(rf"{_NUM} pts \[{_NUM}, {_NUM}\]", "\n".join(grid))
    ps = re.findall(r"p (?:= (\d\.\d{3})|< 0\.001)", "\n".join(grid))
    assert len(gaps) == len(ps) == 4  # row-major: adam NR, adam BN, sgd NR, sgd BN
    for key, (diff, low, high), p in zip(order, gaps, ps, strict=True):
        e_diff, e_low, e_high, e_p = expected[key]
        assert _close(diff, e_diff) and _close(low, e_low) and _close(high, e_high), key
        assert (p == "" and e_p < 0.001) or _close(p, e_p)
    assert len(re.findall(r"n=6\b", "\n".join(grid))) == 4
    # Markdown shows the same numbers, one line per row.
    code, md, _ = _run(["study", "tests", str(directory), "--format", "markdown"], capsys)
    assert code == 0
    assert re.findall(rf"{_NUM} pts \[{_NUM}, {_NUM}\]", "\n".join(
        ln for ln in md.splitlines() if ln.startswith("| "))) == gaps
    # The CSV holds the unrounded numbers in the metric's units (fractions).
    code, out, _ = _run(["study", "tests", str(directory), "--format", "csv"], capsys)
    cells = {(r["optim.name"], r["variant"]): r for r in csv.DictReader(out.splitlines())}
    for key, (e_diff, e_low, e_high, e_p) in expected.items():
        got = cells[key]
        assert float(got["diff"]) == pytest.approx(e_diff / 100)
        assert float(got["diff_ci_low"]) == pytest.approx(e_low / 100, abs=1e-12)
        assert float(got["diff_ci_high"]) == pytest.approx(e_high / 100, abs=1e-12)
        assert float(got["p_adjusted"]) == pytest.approx(e_p)
        assert got["n"] == "6" and got["n_dropped"] == "0" and got["alternative"] == "greater"
        assert got["verdict"].split(" (")[0] in ("sparse better", "dense better",
                                                  "no clear difference")


@pytest.mark.parametrize("alternative", ["greater", "less", "two-sided"])
def test_alternative_and_loss_orientation_through_the_cli(cli_study, tmp_path: Path, capsys,
                                                           alternative: str) -> None:
    _, directory, _ = cli_study
    rows = _export(directory, tmp_path, capsys)
    code, out, err = _run(["study", "tests", str(directory), "--metric", "test_loss",
                           "--alternative", alternative, "--format", "csv"], capsys)
    assert code == 0, err
    cells = {(r["optim.name"], r["variant"]): r for r in csv.DictReader(out.splitlines())}
    flip = {"greater": "less", "less": "greater", "two-sided": "two-sided"}[alternative]
    for key, got in cells.items():
        pairs = _pairs(rows, *key, "test_loss")
        diffs = pairs[:, 0] - pairs[:, 1]  # sparse − dense loss: < 0 when sparse is better
        # H1 sparse better is sparse loss < dense loss: scipy's flipped alternative.
        ref = stats.wilcoxon(np.round(diffs, 12), alternative=flip).pvalue
        assert float(got["p_value"]) == pytest.approx(ref), key
        assert float(got["diff"]) == pytest.approx(diffs.mean())
        low, high = _bca(-diffs)  # the bootstrap runs on the better-oriented d − s
        assert (float(got["diff_ci_low"]), float(got["diff_ci_high"])) == pytest.approx(
            (-high, -low), abs=1e-12)
        assert got["alternative"] == alternative and got["min_n"] == (
            "6" if alternative == "two-sided" else "5")
    code, out, _ = _run(["study", "tests", str(directory), "--metric", "test_loss",
                         "--alternative", alternative, "--format", "markdown"], capsys)
    h1 = {"greater": "sparse < dense", "less": "sparse > dense", "two-sided": "sparse ≠ dense"}
    assert code == 0 and f"H1: {h1[alternative]} on test_loss" in out


def test_where_keeps_the_runs_of_one_value(cli_study, tmp_path: Path, capsys) -> None:
    _, directory, _ = cli_study
    rows = _export(directory, tmp_path, capsys)
    code, out, err = _run(["study", "tests", str(directory), "--where", "optim.name=sgd",
                           "--cols", "dense_width", "--rows", "variant", "--format", "csv"],
                          capsys)
    assert code == 0, err
    cells = {(r["variant"], r["dense_width"]): r for r in csv.DictReader(out.splitlines())}
    assert set(cells) == {(v, w) for v in ("NR", "BN") for w in ("8", "16")}
    for (variant, width), got in cells.items():
        at = {"8": slice(0, 3), "16": slice(3, 6)}[width]  # _pairs: width-major, 3 seeds
        pairs = _pairs(rows, "sgd", variant, "test_accuracy")[at]
        assert got["n"] == "3"  # the 3 seeds of sgd alone, adam's runs left out
        assert float(got["diff"]) == pytest.approx((pairs[:, 0] - pairs[:, 1]).mean())
    for argv, needle in ((["--where", "optim.name=adamw"], "optim.name='adamw' is not a "
                          "value of the study's runs; values: adam, sgd"),
                         (["--where", "model.width=3"], "'model.width' is not a swept axis"),
                         (["--where", "optim.name"], "give AXIS=VALUE")):
        code, _, err = _run(["study", "tests", str(directory), *argv], capsys)
        _assert_one_line_error(code, err, needle)


@pytest.mark.parametrize("argv,needle", [
    (["study", "status", "nope-dir"], "no study"),
    (["study", "tests", "nope-dir"], "no study"),
    (["study", "tests", "nope-dir", "--alternative", "bigger"], "--alternative must be one of "
                                                                "greater, less, two-sided"),
    (["study", "plan", "missing.yaml"], "not found"),
])
def test_study_bad_input(argv: list[str], needle: str, capsys) -> None:
    code, _, err = _run(argv, capsys)
    _assert_one_line_error(code, err, needle)


def test_study_bad_spec_value(tmp_path: Path, capsys) -> None:
    spec = tmp_path / "s.yaml"
    spec.write_text(yaml.safe_dump(spec_dict(axes={"optim.name": ["adamm"]})))
    code, _, err = _run(["study", "run", str(spec), "--dir", str(tmp_path / "d")], capsys)
    _assert_one_line_error(code, err, "unknown optimizer 'adamm'")
    assert not (tmp_path / "d").exists()


def test_main_is_importable() -> None:
    assert callable(main)
