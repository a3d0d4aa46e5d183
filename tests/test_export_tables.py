"""`study export` over a small real study: pair ids, the dense runs' sparse width, the metrics
and gradient-flow tables, and the same pandas dtypes from CSV and parquet."""

from __future__ import annotations

import math
from collections import Counter
from pathlib import Path

import pytest
import torch

from sparseflow.analysis.tables import pair_up
from sparseflow.gradflow import MEASURES, gradient_flow
from sparseflow.store import PlannedRun, StudyStore
from sparseflow.store.export import COLUMN_DOCS, CSV_READ_DTYPES
from sparseflow.store.export_series import (
    GRADFLOW_COLUMN_DOCS,
    LAYER_MEASURES,
    METRICS_COLUMN_DOCS,
    NETWORK_MEASURES,
)
from sparseflow.studies import StudySpec, expand, run_study

from tests.test_cli import _run
from tests.test_readme import _block
from tests.test_store_basic import outputs
from tests.test_studies_plan import spec_dict

pd = pytest.importorskip("pandas")
pytest.importorskip("pyarrow")

AXES = ["optim.lr", "variant"]


@pytest.fixture(scope="module")
def study(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """2 learning rates × NR × dense width 8 × 2 seeds: 4 pairs, 8 finished runs (seconds)."""
    directory = tmp_path_factory.mktemp("export") / "study"
    spec = spec_dict(axes={"optim.lr": [0.05, 1]}, variants=["NR"],
                     scsdc={"sparse_width": 40, "dense_widths": [8]})
    outcome = run_study(expand(StudySpec.model_validate(spec)), directory, jobs=1)
    assert outcome.finished == 8
    return directory


def test_pair_ids_match_the_p_value_pairs(study: Path) -> None:
    with StudyStore(study, readonly=True) as store:
        rows = store.results()
        records = {r.run_key: r for r in store.runs()}
    # The plan stores no sparse width on a dense run: the export takes its pair's.
    assert all(r.sparse_width is None for r in records.values() if r.kind == "dense")
    by_pair: dict[str, list[dict]] = {}
    for row in rows:
        by_pair.setdefault(row["pair_id"], []).append(row)
    assert len(by_pair) == 4 and None not in by_pair
    for pair_id, (a, b) in by_pair.items():
        sparse, dense = sorted((a, b), key=lambda r: r["kind"] != "sparse")
        assert (sparse["kind"], dense["kind"]) == ("sparse", "dense")
        assert pair_id == dense["run_key"]  # stable: the dense twin's key
        for key in ("dense_width", "seed", *AXES):
            assert sparse[key] == dense[key], key
        assert dense["sparse_width"] == sparse["sparse_width"] == 40
    # The pairs of the p-value table are exactly these.
    pairs = pair_up(rows, "test_accuracy", within=AXES)
    mine = {(r["dense_width"], r["seed"], *(r[a] for a in AXES)) for r in rows}
    assert set(pairs.keys) == mine and len(pairs.keys) == 4


def test_a_run_without_partner_has_no_pair_id(tmp_path: Path) -> None:
    def run(key: str, kind: str, width: int, seed: int) -> PlannedRun:
        return PlannedRun(key, key[:3], seed, kind, 40 if kind == "sparse" else None, width,
                          {"variant": "NR"}, {})

    with StudyStore(tmp_path) as s:
        s.add_planned([run("aaa-s0", "sparse", 8, 0), run("bbb-s0", "dense", 8, 0),
                       run("ccc-s1", "sparse", 8, 1), run("ddd-s0", "dense", 16, 0)])
        rows = {r["run_key"]: r for r in s.results()}
    assert rows["aaa-s0"]["pair_id"] == rows["bbb-s0"]["pair_id"] == "bbb-s0"
    assert rows["ccc-s1"]["pair_id"] is None and rows["ddd-s0"]["pair_id"] is None
    assert rows["bbb-s0"]["sparse_width"] == 40 and rows["ddd-s0"]["sparse_width"] is None


def test_metrics_table_is_one_row_per_run_and_epoch(study: Path) -> None:
    with StudyStore(study, readonly=True) as store:
        rows, columns = store.table("metrics")
        series = {r.run_key: store.metrics(r.run_key) for r in store.runs()}
        results = {r["run_key"]: r for r in store.results()}
    assert columns[:7] == ["run_id", "run_key", "kind", "sparse_width", "dense_width", "seed",
                           "pair_id"]
    assert columns[7:9] == AXES and columns[9:] == list(METRICS_COLUMN_DOCS)
    assert len(rows) == sum(len(m) for m in series.values()) == 16
    for row in rows:
        (epoch_row,) = [m for m in series[row["run_key"]] if m["epoch"] == row["epoch"]]
        for key in METRICS_COLUMN_DOCS:
            assert row[key] == epoch_row[key], key
        for key in ("pair_id", "sparse_width", "optim.lr", "variant"):
            assert row[key] == results[row["run_key"]][key]
    # The last epoch's test accuracy is the run's final one (no early stopping here).
    last = {r["run_key"]: r for r in rows if r["epoch"] == 2}
    assert all(last[k]["test_accuracy"] == pytest.approx(results[k]["test_accuracy"])
               for k in last)


def test_gradflow_table_is_long_with_an_all_row(study: Path) -> None:
    with StudyStore(study, readonly=True) as store:
        rows, columns = store.table("gradflow")
        series = {r.run_key: store.gradflow(r.run_key) for r in store.runs()}
    assert set(GRADFLOW_COLUMN_DOCS) <= set(columns)
    n_layers = len(next(iter(series.values()))[0]["per_layer"])
    n_points = sum(len(s) for s in series.values())
    assert len(rows) == n_points * (1 + n_layers)
    counts = Counter(r["layer"] for r in rows)
    assert counts["all"] == n_points and len(counts) == 1 + n_layers
    for key, points in series.items():
        for i, point in enumerate(points):
            mine = [r for r in rows if r["run_key"] == key and r["point"] == i]
            net, *layers = mine
            assert net["layer"] == "all" and net["layer_index"] == -1
            assert net["epoch"] == point["epoch"] and net["step"] == point["step"]
            assert all(net[m] == point[m] for m in NETWORK_MEASURES)
            assert all(net[m] is None for m in LAYER_MEASURES)
            assert [r["layer"] for r in layers] == list(point["per_layer"])
            assert [r["layer_index"] for r in layers] == list(range(n_layers))
            for r in layers:
                assert all(r[m] == point["per_layer"][r["layer"]][m] for m in LAYER_MEASURES)
                assert all(r[m] is None for m in NETWORK_MEASURES)
            # EGF₂ is the mean of the layers' masked L2 norms (hand-computed from the rows).
            assert net["egf2"] == pytest.approx(sum(r["norm2"] for r in layers) / n_layers)


def test_measure_names_are_those_of_gradient_flow() -> None:
    flow = gradient_flow({"a": torch.ones(2, 3), "b": torch.ones(3)})
    assert NETWORK_MEASURES == MEASURES
    assert tuple(flow["per_layer"]["a"]) == LAYER_MEASURES


def _dtypes(frame: object) -> dict[str, str]:
    return {c: str(frame[c].dtype) for c in frame}  # type: ignore[attr-defined]


def _differ(a: object, b: object) -> set[str]:
    da, db = _dtypes(a), _dtypes(b)
    assert list(da) == list(db)
    return {c for c in da if da[c] != db[c]}


@pytest.mark.parametrize("table", ["runs", "metrics", "gradflow"])
def test_csv_and_parquet_read_with_the_same_dtypes(study: Path, table: str) -> None:
    with StudyStore(study, readonly=True) as store:
        store.export(study / "t.csv", "csv", table=table)
        store.export(study / "t.parquet", "parquet", table=table)
    b = pd.read_parquet(study / "t.parquet")
    # Plain read_csv differs at most on text columns it cannot type (no failed run: `error`
    # is empty); with CSV_READ_DTYPES nothing differs, values included.
    assert _differ(pd.read_csv(study / "t.csv"), b) <= set(CSV_READ_DTYPES)
    a = pd.read_csv(study / "t.csv", dtype=CSV_READ_DTYPES)
    assert len(a) == len(b) > 0 and _differ(a, b) == set()
    pd.testing.assert_frame_equal(a, b, check_exact=False, rtol=1e-12)


@pytest.fixture
def awkward(tmp_path: Path) -> Path:
    """Finished, failed, running and planned runs; inf and NaN results; bools with missing
    values; ints stored as floats; axis columns of mixed types (int+float, int+text, bool)."""
    def run(i: int, kind: str, **cell: object) -> PlannedRun:
        key = f"{i}af{i}c0ffee{i}"
        return PlannedRun(f"{key}-s0", key, 0, kind, 40 if kind == "sparse" else None,
                          8 + i % 4, cell, {})

    with StudyStore(tmp_path / "study") as s:
        s.add_planned([run(0, "sparse", lr=0.1, x=1, bn=True, variant="NR"),
                       run(4, "dense", lr=0.1, x=1, bn=True, variant="NR"),  # 0's partner
                       run(1, "dense", lr=1, x="auto", bn=False, variant="NR"),
                       run(2, "sparse", lr=0.01, x=None, bn=True, variant="BN"),
                       run(3, "dense", lr=0.5, x=2, bn=None, variant="BN")])
        summary, metrics, flow = outputs(epochs=3)
        summary.update(test_loss=math.inf, egf2=math.nan, stopped_early=False, epochs=3.0,
                       active_weights=464, density=1)
        metrics[1]["val_loss"] = math.nan
        s.record_finished("0af0c0ffee0-s0", summary, metrics, flow)
        s.mark_running("1af1c0ffee1-s0")
        s.record_failed("1af1c0ffee1-s0", "=1+1 RuntimeError")
        s.mark_running("2af2c0ffee2-s0")
    return tmp_path / "study"


@pytest.mark.parametrize("table", ["runs", "metrics", "gradflow"])
def test_awkward_values_keep_their_dtypes(awkward: Path, table: str) -> None:
    with StudyStore(awkward, readonly=True) as store:
        store.export(awkward / "t.csv", "csv", table=table)
        store.export(awkward / "t.parquet", "parquet", table=table)
    a, b = pd.read_csv(awkward / "t.csv"), pd.read_parquet(awkward / "t.parquet")
    assert _differ(a, b) == set()  # every text column has a value: plain read_csv suffices
    if table == "runs":
        assert str(a["epochs"].dtype) == "float64" and a["epochs"][0] == 3  # int with missing
        assert a["test_loss"][0] == math.inf and math.isnan(a["egf2"][0])
        assert a["diverged"].dtype == bool and a["stopped_early"].dtype == object
        assert str(a["lr"].dtype) == "float64" and pd.api.types.is_string_dtype(a["x"])
        assert a["pair_id"][0] == a["pair_id"][1] == "4af4c0ffee4-s0"  # the dense twin
    assert list(a.columns).count("lr") == 1  # the metrics table's own `lr` wins over the axis
    if table == "metrics":
        assert a["lr"].isna().all()  # none recorded (the axis value would be 0.1)


def test_csv_read_dtypes_cover_columns_without_values(tmp_path: Path) -> None:
    """No run failed (an empty `error` column), and run ids of digits only: read_csv needs
    CSV_READ_DTYPES to read them as text; with it the dtypes equal parquet's."""
    with StudyStore(tmp_path) as s:
        s.add_planned([PlannedRun("123456789012-s0", "123456789012", 0, "sparse", 40, 8,
                                  {"variant": "NR"}, {})])
        summary, metrics, flow = outputs()
        s.record_finished("123456789012-s0", {**summary, "stopped_early": True}, metrics, flow)
        s.export(tmp_path / "r.csv", "csv")
        s.export(tmp_path / "r.parquet", "parquet")
    plain = pd.read_csv(tmp_path / "r.csv")
    assert str(plain["error"].dtype) == "float64"  # the limit CSV_READ_DTYPES is there for
    a, b = pd.read_csv(tmp_path / "r.csv", dtype=CSV_READ_DTYPES), pd.read_parquet(
        tmp_path / "r.parquet")
    assert _differ(a, b) == set()
    assert a["run_id"][0] == "123456789012" and set(CSV_READ_DTYPES) - {"layer"} <= set(
        COLUMN_DOCS)


def test_cli_table_option_and_default_names(study: Path, capsys: pytest.CaptureFixture[str]
                                            ) -> None:
    for table, name in (("metrics", "metrics.csv"), ("gradflow", "gradflow.parquet")):
        fmt = name.rsplit(".", 1)[1]
        code, out, _ = _run(["study", "export", str(study), "--table", table, "--format", fmt],
                            capsys)
        assert code == 0 and (study / name).is_file() and name in out
    code, _, err = _run(["study", "export", str(study), "--table", "epochs"], capsys)
    assert code == 2 and "--table must be one of runs, metrics, gradflow" in err
    assert err.strip().count("\n") == 0


@pytest.mark.parametrize("block,docs", [("export-metrics-columns", METRICS_COLUMN_DOCS),
                                        ("export-gradflow-columns", GRADFLOW_COLUMN_DOCS)])
def test_series_columns_documented(block: str, docs: dict[str, str]) -> None:
    text = _block(block)
    for column, meaning in docs.items():
        assert f"| `{column}` | {meaning} |" in text, column


def test_readme_pandas_recipes(study: Path) -> None:
    """The README's one-liners do what it says on this study's exports."""
    with StudyStore(study, readonly=True) as store:
        store.export(study / "r.parquet", "parquet")
        store.export(study / "g.parquet", "parquet", table="gradflow")
    runs = pd.read_parquet(study / "r.parquet")
    wide = runs.pivot_table(index="pair_id", columns="kind", values="test_accuracy")
    assert wide.shape == (4, 2) and not wide.isna().any().any()
    df = pd.read_parquet(study / "g.parquet")
    net = df[df.layer == "all"]
    norms = df[df.layer != "all"].pivot_table(index=["run_key", "epoch"], columns="layer",
                                              values="norm2")
    assert len(net) == len(norms) and norms.shape[1] == df.layer.nunique() - 1
    egf2 = net.set_index(["run_key", "epoch"])["egf2"].sort_index().to_numpy()
    assert list(egf2) == pytest.approx(list(norms.mean(axis=1).sort_index().to_numpy()))
