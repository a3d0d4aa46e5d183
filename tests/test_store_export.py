"""The `study export` contract: rows, column order, CSV and parquet round trips."""

from __future__ import annotations

import csv
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from sparseflow.store import COLUMN_DOCS, PlannedRun, StoreError, StudyStore

from tests.test_store_basic import outputs

CONTRACT = ["run_id", "run_key", "kind", "sparse_width", "dense_width", "seed", "status",
            "test_accuracy", "test_loss", "val_accuracy", "val_loss", "train_loss",
            "train_accuracy", "egf1", "egf2", "gf1", "gf2", "gf1_masked", "gf2_masked",
            "egf1_per_weight", "egf2_per_weight", "epochs", "duration_s", "error"]
IDENTITY = ["run_id", "run_key", "kind", "sparse_width", "dense_width", "seed", "pair_id"]


def _run(i: int, kind: str, **cell: object) -> PlannedRun:
    return PlannedRun(f"c{i}-s{i % 2}", f"c{i}", i % 2, kind, 8, 32 if kind == "dense" else 16,
                      cell, {})


@pytest.fixture
def store(tmp_path: Path) -> Iterator[StudyStore]:
    """Four runs over the axes optim.name × optim.lr: finished, failed, running, planned."""
    with StudyStore(tmp_path / "study") as s:
        s.init_study("demo", {}, "fp")
        s.add_planned([
            _run(0, "sparse", **{"optim.name": "sgd", "optim.lr": 0.1, "variant": "a"}),
            _run(1, "dense", **{"optim.name": "adam", "optim.lr": 1, "variant": "a"}),
            _run(2, "sparse", **{"optim.name": "sgd", "optim.lr": 0.1, "variant": "b"}),
            _run(3, "dense", **{"optim.name": "adam", "optim.lr": 0.01, "variant": "b"}),
        ])
        s.record_finished("c0-s0", *outputs(epochs=4))
        s.mark_running("c1-s1")
        s.record_failed("c1-s1", "ValueError: diverged")
        s.mark_running("c2-s0")
        yield s


def test_results_rows_follow_the_contract(store: StudyStore) -> None:
    rows = store.results()
    assert [r["run_key"] for r in rows] == ["c0-s0", "c1-s1", "c2-s0", "c3-s1"]
    columns = list(rows[0])
    assert set(CONTRACT) <= set(columns) and set(columns) <= set(COLUMN_DOCS) | {
        "optim.lr", "optim.name", "variant"}
    assert columns[:7] == IDENTITY
    assert columns[7:10] == ["optim.lr", "optim.name", "variant"]  # axes sorted, then metrics
    assert columns[10] == "status" and columns[-2:] == ["duration_s", "error"]
    assert all(list(r) == columns for r in rows)
    done, failed, running, planned = rows
    assert done["run_id"] == "c0" and done["kind"] == "sparse" and done["epochs"] == 4
    assert done["test_accuracy"] == 0.75 and done["egf2"] == 0.5 and done["duration_s"] == 2.5
    assert failed["status"] == "failed" and failed["error"] == "ValueError: diverged"
    for row in (failed, running, planned):
        assert all(row[m] is None for m in CONTRACT[7:-1]), row
    assert running["status"] == "running" and planned["status"] == "planned"


def test_csv_round_trip(store: StudyStore, tmp_path: Path) -> None:
    path = store.export(tmp_path / "out" / "results.csv", "csv")
    with path.open(newline="") as fh:
        read = list(csv.DictReader(fh))
    rows = store.results()
    assert len(read) == 4 and list(read[0]) == list(rows[0])
    for back, row in zip(read, rows, strict=True):
        for key, value in row.items():
            assert back[key] == ("" if value is None else str(value)), key
    assert float(read[0]["test_loss"]) == 0.5 and read[2]["test_loss"] == ""
    assert [p.name for p in path.parent.iterdir()] == ["results.csv"]  # no temp file left


def test_parquet_round_trip(store: StudyStore, tmp_path: Path) -> None:
    pq = pytest.importorskip("pyarrow.parquet")
    path = store.export(tmp_path / "results.parquet", "PARQUET")
    table = pq.read_table(path)
    rows = store.results()
    assert table.column_names == list(rows[0])
    assert table.to_pylist() == rows
    types = {f.name: str(f.type) for f in table.schema}
    assert types["test_accuracy"] == "double" and types["seed"] == "int64"
    assert types["optim.lr"] == "double" and types["optim.name"] == "string"
    assert types["error"] == "string" and types["sparse_width"] == "int64"


def test_parquet_of_an_empty_study_keeps_the_columns(tmp_path: Path) -> None:
    pq = pytest.importorskip("pyarrow.parquet")
    with StudyStore(tmp_path) as s:
        path = s.export(tmp_path / "empty.parquet", "parquet")
    table = pq.read_table(path)
    assert table.num_rows == 0 and set(CONTRACT) <= set(table.column_names)
    assert str(table.schema.field("egf2").type) == "double"


def test_axis_values_of_mixed_types_become_text(tmp_path: Path) -> None:
    pq = pytest.importorskip("pyarrow.parquet")
    with StudyStore(tmp_path) as s:
        s.add_planned([_run(0, "sparse", **{"model.widths": [8, 8], "x": "a"}),
                       _run(1, "sparse", **{"x": 3})])
        path = s.export(tmp_path / "mixed.parquet", "parquet")
        s.export(tmp_path / "mixed.csv", "csv")
    back = pq.read_table(path).to_pylist()
    assert [r["x"] for r in back] == ["a", "3"]
    assert [r["model.widths"] for r in back] == ["[8, 8]", None]
    with (tmp_path / "mixed.csv").open(newline="") as fh:
        assert [r["model.widths"] for r in csv.DictReader(fh)] == ["[8, 8]", ""]


def test_missing_pyarrow_is_one_line(store: StudyStore, tmp_path: Path,
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pyarrow", None)  # import pyarrow → ImportError
    with pytest.raises(StoreError, match=r"pip install pyarrow .*sparseflow\[parquet\]"):
        store.export(tmp_path / "x.parquet", "parquet")
    assert not (tmp_path / "x.parquet").exists()


def test_unknown_format(store: StudyStore, tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="formats: csv, parquet"):
        store.export(tmp_path / "x.xlsx", "xlsx")
