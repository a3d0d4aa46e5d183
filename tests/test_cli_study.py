"""`sparseflow pair` and `sparseflow study …` from the command line."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import yaml
from scipy import stats

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


def test_study_plan_run_tests_export(tmp_path: Path, capsys) -> None:
    spec = tmp_path / "s.yaml"
    spec.write_text(yaml.safe_dump(spec_dict(seeds=3, variants=["NR", "BN"],
                                             scsdc={"sparse_width": 40,
                                                    "dense_widths": [8, 16]})))
    code, out, _ = _run(["study", "plan", str(spec)], capsys)
    assert code == 0 and "pairs" in out and "24" in out and "estimated" in out
    study = tmp_path / "study"
    code, out, err = _run(["study", "run", str(spec), "--dir", str(study), "--jobs", "2"],
                          capsys)
    assert code == 0, err
    flat = " ".join(out.split())  # rich wraps long lines at the terminal width
    assert "48 runs finished, 0 failed" in flat and "H1: sparse > dense" in flat
    code, out, _ = _run(["study", "status", str(study)], capsys)
    assert code == 0 and "finished" in out and "48" in out
    code, out, _ = _run(["study", "export", str(study), "--out", str(tmp_path / "r.csv")],
                        capsys)
    assert code == 0
    rows = list(csv.DictReader((tmp_path / "r.csv").read_text().splitlines()))
    code, out, _ = _run(["study", "tests", str(study), "--format", "csv"], capsys)
    assert code == 0
    cells = {(r["optim.name"], r["variant"]): r for r in csv.DictReader(out.splitlines())}
    # Recompute one cell's p-value with scipy from the export: adam × BN, pairs by (width, seed).
    def acc(kind: str, w: str, s: str) -> float:
        (r,) = [r for r in rows if r["kind"] == kind and r["dense_width"] == w and
                r["seed"] == s and r["optim.name"] == "adam" and r["variant"] == "BN"]
        return float(r["test_accuracy"])
    keys = [(w, s) for w in ("8", "16") for s in ("0", "1", "2")]
    sparse = [acc("sparse", w, s) for w, s in keys]
    dense = [acc("dense", w, s) for w, s in keys]
    expected = stats.wilcoxon([a - b for a, b in zip(sparse, dense, strict=True)],
                              alternative="greater").pvalue
    assert float(cells[("adam", "BN")]["p_value"]) == pytest.approx(expected)
    code, out, _ = _run(["study", "correlate", str(study)], capsys)
    assert code == 0 and "EGF₂" in out and "24 sparse and 24 dense" in out


@pytest.mark.parametrize("argv,needle", [
    (["study", "status", "nope-dir"], "no study"),
    (["study", "tests", "nope-dir"], "no study"),
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
