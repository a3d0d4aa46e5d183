"""Diverged runs count: stored faithfully, marked, stopped, ranked worst in loss tests and kept
in correlations; `--metric` checked; export writes through special files and escapes formulas."""

from __future__ import annotations

import csv
import json
import math
import os
import shutil
import stat
from pathlib import Path

import numpy as np
import pytest
import yaml
from scipy import stats

from sparseflow.analysis import kendall_table, pvalue_table
from sparseflow.config import ExperimentConfig
from sparseflow.store import codec
from sparseflow.store.export import write_rows
from sparseflow.train import read_summary, run_experiment
from sparseflow.train.vectorized.group import run_group
from sparseflow.utils.atomic import atomic_write_json, read_json

from tests.conftest import tiny
from tests.test_cli import _assert_one_line_error, _run
from tests.test_studies_plan import spec_dict

INF, NAN = math.inf, math.nan


def _same(a: object, b: object) -> bool:
    """Equality where NaN equals NaN (nested dicts and lists)."""
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a):
        return math.isnan(b)
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return a == b


# Storage ---------------------------------------------------------------------------------------
def test_json_files_keep_non_finite_values_as_standard_json(tmp_path: Path) -> None:
    obj = {"loss": INF, "low": -INF, "n": NAN, "ok": 1.5, "series": [{"x": NAN}, 2],
           "name": "run"}
    atomic_write_json(tmp_path / "s.json", obj)
    text = (tmp_path / "s.json").read_text()

    def refuse(token: str) -> None:
        raise AssertionError(f"non-standard token {token}")

    raw = json.loads(text, parse_constant=refuse)  # standard JSON: no NaN/Infinity tokens
    assert raw["loss"] == "inf" and raw["low"] == "-inf" and raw["n"] == "nan"
    assert _same(read_json(tmp_path / "s.json"), obj)


def test_store_codec_round_trips_non_finite_values() -> None:
    obj = {"a": INF, "b": [np.float64("nan"), -INF], "c": np.float32(2.5)}
    back = codec.loads(codec.dumps(obj))
    assert back["a"] == INF and math.isnan(back["b"][0]) and back["b"][1] == -INF
    assert back["c"] == 2.5
    assert codec.number(INF) == INF and codec.number(NAN) is None and codec.number("x") is None


# Training: the divergence hook -------------------------------------------------------------------
def _cfg(seed: int, lr: float, epochs: int = 4) -> ExperimentConfig:
    return ExperimentConfig.model_validate(tiny(seed=seed, optim={"name": "sgd", "lr": lr},
                                                train={"epochs": epochs},
                                                gradflow={"enabled": True, "points": 3}))


def test_a_diverged_run_stops_is_marked_and_its_nan_survives(tmp_path: Path) -> None:
    res = run_experiment(_cfg(0, 1e6), tmp_path)
    s = read_summary(res.run_dir)
    assert s["diverged"] is True and s["stop_reason"].startswith("diverged: training loss")
    assert s["epochs"] < 4 and s["stopped_early"] is False
    history = read_json(res.run_dir / "metrics.json")
    assert not math.isfinite(history[-1]["train_loss"])
    assert all(math.isfinite(h["train_loss"]) for h in history[:-1])
    assert not math.isfinite(s["test_loss"])  # faithful, not None
    # Average EGF covers the finite probe points, up to divergence.
    flow = read_json(res.run_dir / "gradflow.json")
    finite = [p["egf2"] for p in flow if math.isfinite(p["egf2"])]
    assert finite and s["egf2"] == pytest.approx(math.fsum(finite) / len(finite))
    ok = read_summary(run_experiment(_cfg(0, 0.05, epochs=2), tmp_path).run_dir)
    assert ok["diverged"] is False and ok["epochs"] == 2


def test_vectorized_group_stops_only_the_diverged_member(tmp_path: Path) -> None:
    results = run_group([_cfg(1, 1e6), _cfg(2, 0.05)], tmp_path)
    bad, good = (read_summary(r.run_dir) for r in results)
    assert bad["vectorized_group"] == 2
    assert bad["diverged"] is True and bad["stop_reason"].startswith("diverged")
    assert bad["epochs"] < 4 and not math.isfinite(bad["test_loss"])
    assert good["diverged"] is False and good["epochs"] == 4 and math.isfinite(good["test_loss"])


# Statistics -------------------------------------------------------------------------------------
def _rows(sparse: list[float], dense: list[float], metric: str) -> list[dict]:
    rows = []
    for seed, (s, d) in enumerate(zip(sparse, dense, strict=True)):
        for kind, v in (("sparse", s), ("dense", d)):
            rows.append({"kind": kind, "dense_width": 8, "seed": seed, "optim.name": "sgd",
                         "variant": "NR", "status": "finished", metric: v,
                         "diverged": not math.isfinite(v)})
    return rows


def test_diverged_sparse_losses_rank_worst() -> None:
    # The measured case: 3 of 8 sparse runs diverge, the other 5 win (lower loss).
    dense = [0.50, 0.52, 0.55, 0.51, 0.53, 0.54, 0.56, 0.57]
    sparse = [0.40, 0.41, 0.45, 0.43, 0.44, NAN, INF, NAN]
    table = pvalue_table(_rows(sparse, dense, "test_loss"), "test_loss")
    cell = table.cell("sgd", "NR")
    # Oracle: the diverged losses replaced by a loss larger than any other (the worst).
    worst = [v if math.isfinite(v) else 1e9 for v in sparse]
    expected = stats.wilcoxon(np.array(dense) - np.array(worst), alternative="greater")
    assert cell.result.n == 8 and cell.diverged_sparse == 3 and cell.diverged_dense == 0
    assert cell.result.p_value == pytest.approx(expected.pvalue)
    # Dropping them would have claimed significance: 5 of 5 wins, p = 1/32.
    dropped = stats.wilcoxon(np.array(dense[:5]) - np.array(sparse[:5]), alternative="greater")
    assert dropped.pvalue == pytest.approx(0.03125) and cell.result.p_value > 0.6
    md, records = table.to_markdown(), table.to_records()
    assert "n=8, 3 div." in md and "3 sparse diverged" in md
    grid = table.to_rich().renderables[0]
    assert records[0]["diverged_sparse"] == 3 and "3 div." in str(grid.columns[1]._cells[0])
    assert "diverged_sparse" in table.to_csv().splitlines()[0]


def test_both_diverged_is_a_tie_and_accuracy_is_kept_as_measured() -> None:
    dense = [0.5, 0.52, 0.55, 0.51, 0.53, NAN]
    sparse = [0.4, 0.41, 0.45, 0.43, 0.44, INF]
    cell = pvalue_table(_rows(sparse, dense, "test_loss"), "test_loss").cell("sgd", "NR")
    assert cell.result.n == 6 and "1 zero difference" in cell.result.note
    ref = stats.wilcoxon(np.array(dense[:5]) - np.array(sparse[:5]), alternative="greater")
    assert cell.result.p_value == pytest.approx(ref.pvalue)
    # An accuracy test uses a diverged run's accuracy as it was measured.
    acc_s, acc_d = [0.9, 0.91, 0.92, 0.93, 0.94, 0.1], [0.8, 0.81, 0.82, 0.83, 0.84, 0.85]
    rows = _rows(acc_s, acc_d, "test_accuracy")
    rows[-2]["diverged"] = True
    cell = pvalue_table(rows, "test_accuracy").cell("sgd", "NR")
    exact = np.round(np.array(acc_s) - np.array(acc_d), 10)  # five exact ties of 0.1
    ref = stats.wilcoxon(exact, alternative="greater")
    assert cell.result.p_value == pytest.approx(ref.pvalue) and cell.diverged_sparse == 1


def test_correlation_keeps_a_diverged_run_as_the_worst_loss() -> None:
    runs = [{"kind": "sparse", "egf2": float(i), "test_loss": 0.1 * i, "test_accuracy": 0.5}
            for i in range(6)]
    runs[2]["test_loss"] = NAN  # diverged
    cell = kendall_table(runs, ["egf2"], targets=["test_loss"], kinds=["sparse"]).cell(
        "egf2", "sparse", "test_loss")
    ref = stats.kendalltau([r["egf2"] for r in runs], [0.0, 0.1, 1e9, 0.3, 0.4, 0.5])
    assert cell.n == 6 and cell.tau == pytest.approx(ref.statistic)


# Export -------------------------------------------------------------------------------------------
def test_csv_keeps_non_finite_values_and_escapes_formulas(tmp_path: Path) -> None:
    rows = [{"variant": "=HYPERLINK(\"http://x\")", "other": "-cmd", "neg": -1.5,
             "text_num": "-2", "loss": INF, "acc": NAN, "at": "@SUM(A1)", "plus": "+1+2"}]
    path = write_rows(rows, list(rows[0]), tmp_path / "r.csv", "csv")
    (got,) = list(csv.DictReader(path.read_text().splitlines()))
    assert got["variant"] == "'=HYPERLINK(\"http://x\")" and got["other"] == "'-cmd"
    assert got["at"] == "'@SUM(A1)" and got["plus"] == "'+1+2"
    assert got["neg"] == "-1.5" and got["text_num"] == "-2"  # numbers are not formulas
    assert got["loss"] == "inf" and got["acc"] == "nan"
    try:
        import pandas as pd
    except ImportError:
        return  # pandas is optional; the text above is what it would parse
    frame = pd.read_csv(path)
    assert frame["loss"][0] == INF and math.isnan(frame["acc"][0])


def test_parquet_keeps_inf_and_nan(tmp_path: Path) -> None:
    pq = pytest.importorskip("pyarrow.parquet")
    rows = [{"run_id": "a", "test_loss": INF, "egf2": NAN, "epochs": 2, "diverged": True}]
    path = write_rows(rows, list(rows[0]), tmp_path / "r.parquet", "parquet")
    got = pq.read_table(path).to_pylist()[0]
    assert got["test_loss"] == INF and math.isnan(got["egf2"]) and got["diverged"] is True


# A small real study with diverging runs, through the CLI ---------------------------------------
@pytest.fixture(scope="module")
def study(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from sparseflow.cli import main

    root = tmp_path_factory.mktemp("div")
    spec = root / "s.yaml"
    spec.write_text(yaml.safe_dump(spec_dict(
        axes={"optim.lr": [0.05, 1e6]}, variants=["NR"], seeds=2,
        base={"data": {"name": "mnist1d", "num_samples": 600},
              "model": {"hidden_layers": 1}, "optim": {"name": "sgd"},
              "train": {"epochs": 3, "batch_size": 64}, "gradflow": {"points": 3}},
        scsdc={"sparse_width": 24, "dense_widths": [8]})))
    try:
        main(["study", "run", str(spec), "--dir", str(root / "st"), "--jobs", "1"])
    except SystemExit as exc:
        assert not exc.code
    return root / "st"


def test_study_marks_diverged_runs_in_export_and_tables(study: Path, tmp_path: Path,
                                                        capsys) -> None:
    code, _, err = _run(["study", "export", str(study), "--out", str(tmp_path / "r.csv")],
                        capsys)
    assert code == 0, err
    rows = list(csv.DictReader((tmp_path / "r.csv").read_text().splitlines()))
    assert len(rows) == 8
    for r in rows:
        diverged = float(r["optim.lr"]) > 1
        assert r["diverged"] == str(diverged)
        assert (r["test_loss"] == "nan") == diverged or not diverged
    code, out, _ = _run(["study", "tests", str(study), "--metric", "test_loss", "--rows",
                         "optim.lr", "--format", "csv"], capsys)
    assert code == 0
    cells = {r["optim.lr"]: r for r in csv.DictReader(out.splitlines())}
    assert cells["1000000.0"]["diverged_sparse"] == "2" == cells["1000000.0"]["diverged_dense"]
    assert cells["0.05"]["diverged_sparse"] == "0"
    code, out, _ = _run(["study", "tests", str(study), "--metric", "test_loss", "--rows",
                         "optim.lr", "--format", "markdown"], capsys)
    assert code == 0 and "n=2, 4 div." in out
    code, out, _ = _run(["study", "tests", str(study), "--rows", "optim.lr"], capsys)
    assert code == 0 and "4 div." in out
    code, out, _ = _run(["study", "correlate", str(study)], capsys)
    assert code == 0 and "4 sparse and 4 dense" in out


def test_report_counts_diverged_runs(study: Path, tmp_path: Path, capsys) -> None:
    out_html = tmp_path / "r.html"
    code, _, err = _run(["study", "report", str(study), "--out", str(out_html), "--rows",
                         "optim.lr"], capsys)
    assert code == 0, err
    text = out_html.read_text()
    assert "2 sparse and 2 dense finished run(s) diverged" in text and "4 div." in text


@pytest.mark.parametrize("argv", [
    ["study", "tests", "{study}", "--metric", "acc"],
    ["study", "report", "{study}", "--metric", "acc"],
    ["study", "run", "{spec}", "--dir", "{new}", "--metric", "accuracy"],
])
def test_unknown_metric_is_one_line_and_trains_nothing(argv: list[str], study: Path,
                                                       tmp_path: Path, capsys) -> None:
    spec = tmp_path / "s.yaml"
    spec.write_text(yaml.safe_dump(spec_dict()))
    args = [a.format(study=study, spec=spec, new=tmp_path / "new") for a in argv]
    code, _, err = _run(args, capsys)
    _assert_one_line_error(code, err, "acc")
    assert "test_accuracy" in err and not (tmp_path / "new").exists()


def test_export_to_special_files(study: Path, tmp_path: Path, capsys) -> None:
    code, _, err = _run(["study", "export", str(study), "--out", "/dev/null"], capsys)
    assert code == 0, err
    assert stat.S_ISCHR(os.stat("/dev/null").st_mode)  # written through, not replaced
    if Path("/dev/full").exists():
        code, _, err = _run(["study", "export", str(study), "--out", "/dev/full"], capsys)
        _assert_one_line_error(code, err, "/dev/full")
    code, _, err = _run(["study", "export", str(study), "--out", str(tmp_path)], capsys)
    _assert_one_line_error(code, err, "directory")
    code, _, err = _run(["study", "report", str(study), "--out", "/dev/null"], capsys)
    assert code == 0, err
    assert stat.S_ISCHR(os.stat("/dev/null").st_mode)


def test_report_to_a_directory_is_refused_before_drawing(study: Path, tmp_path: Path,
                                                         capsys) -> None:
    shutil.rmtree(study / "report", ignore_errors=True)
    code, _, err = _run(["study", "report", str(study), "--out", str(tmp_path)], capsys)
    _assert_one_line_error(code, err, "directory")
    assert not (study / "report").exists()  # no figure was drawn for a refused report
