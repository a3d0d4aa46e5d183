"""The study store: opening, the study row, planning, state changes, reading back."""

from __future__ import annotations

import math
import os
import sqlite3
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from sparseflow.store import (
    SCHEMA_VERSION,
    STATUSES,
    PlannedRun,
    StoreError,
    StudyMismatchError,
    StudyStore,
)
from sparseflow.utils.atomic import atomic_write_json


def planned(i: int, seed: int = 0, kind: str = "sparse", **cell: Any) -> PlannedRun:
    """A small planned run ``c<i>-s<seed>``."""
    return PlannedRun(run_key=f"c{i}-s{seed}", config_id=f"c{i}", seed=seed, kind=kind,
                      sparse_width=8 if kind == "sparse" else None, dense_width=16,
                      cell={"variant": "base", **cell}, config={"seed": seed, "i": i})


def outputs(epochs: int = 3, points: int = 2, tag: int = 0) -> tuple[dict, list, list]:
    """(summary, metrics, gradflow) shaped like a run directory's files."""
    summary = {"run_id": "c0", "seed": 0, "test_accuracy": 0.75, "test_loss": 0.5,
               "val_accuracy": 0.7, "val_loss": 0.6, "train_loss": 0.4, "train_accuracy": 0.8,
               "egf1": 1.0, "egf2": 0.5, "gf1": 2.0, "gf2": 1.5, "gf1_masked": 1.2,
               "gf2_masked": 0.9, "egf1_per_weight": 0.01, "egf2_per_weight": 0.02,
               "epochs": epochs, "duration_s": 2.5, "tag": tag}
    metrics = [{"epoch": e + 1, "train_loss": 1.0 / (e + 1), "test_accuracy": 0.1 * e,
                "tag": tag} for e in range(epochs)]
    flow = [{"epoch": p, "step": 10 * p, "gf2": 1.0 + p, "egf2": 0.5 + p, "tag": tag,
             "per_layer": {"fc0": {"norm2": 0.3, "active": 5}, "fc1": {"norm2": 0.2}}}
            for p in range(points)]
    return summary, metrics, flow


@pytest.fixture
def store(tmp_path: Path) -> Iterator[StudyStore]:
    with StudyStore(tmp_path / "study") as s:
        s.init_study("demo", {"seeds": [0, 1]}, "fp1")
        yield s


def test_create_false_without_store_says_how_to_start(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match=r"no study at .*; run `sparseflow study run`"):
        StudyStore(tmp_path / "nothing", create=False)
    assert not (tmp_path / "nothing").exists()


def test_settings_and_schema_version(store: StudyStore) -> None:
    conn = store._connection()
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    assert conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1
    version = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()[0]
    assert int(version) == SCHEMA_VERSION


def test_newer_schema_is_refused(tmp_path: Path) -> None:
    StudyStore(tmp_path).close()
    with sqlite3.connect(tmp_path / "study.sqlite") as raw:
        raw.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    raw.close()
    with pytest.raises(StoreError, match="schema version 99, newer .*upgrade sparseflow"):
        StudyStore(tmp_path, create=False)


def test_garbage_file_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "study.sqlite").write_bytes(b"not a database at all, really" * 100)
    with pytest.raises(StoreError, match="is corrupt .*--rebuild"):
        StudyStore(tmp_path)


def test_init_study_first_update_and_mismatch(store: StudyStore) -> None:
    info = store.study_info()
    assert info is not None and info["name"] == "demo" and info["spec"] == {"seeds": [0, 1]}
    store.init_study("demo", {"seeds": [0, 1, 2]}, "fp1")  # the study grows
    grown = store.study_info()
    assert grown["spec"] == {"seeds": [0, 1, 2]} and grown["created_at"] == info["created_at"]
    with pytest.raises(StudyMismatchError) as exc:
        store.init_study("other", {"seeds": [0]}, "fp2")
    msg = str(exc.value)
    assert "'demo'" in msg and "different base configuration" in msg and "--dir" in msg
    assert "\n" not in msg
    assert store.study_info()["spec"] == {"seeds": [0, 1, 2]}  # unchanged by the refusal


def test_study_info_none_before_init(tmp_path: Path) -> None:
    with StudyStore(tmp_path) as s:
        assert s.study_info() is None


def test_add_planned_ignores_duplicates_keeping_first_cell(store: StudyStore) -> None:
    assert store.add_planned([planned(0), planned(1), planned(0, lr=9)]) == 2
    assert store.add_planned([planned(1, variant="other"), planned(2)]) == 1
    runs = store.runs()
    assert [r.run_key for r in runs] == ["c0-s0", "c1-s0", "c2-s0"]  # plan order
    assert runs[0].cell == {"variant": "base"} and runs[1].cell == {"variant": "base"}
    assert runs[0].config == {"seed": 0, "i": 0} and runs[0].status == "planned"
    clash = PlannedRun("c0-s0", "zzz", 0, "sparse", 8, 16, {}, {})
    with pytest.raises(StoreError, match="config id"):
        store.add_planned([clash])


def test_planned_run_validation() -> None:
    with pytest.raises(StoreError, match="kind"):
        PlannedRun("a-s0", "a", 0, "medium", 8, 16, {}, {})
    with pytest.raises(StoreError, match="directory name"):
        PlannedRun("../a", "a", 0, "dense", None, 16, {}, {})


def test_lifecycle_counts_and_filters(store: StudyStore) -> None:
    store.add_planned([planned(i) for i in range(4)])
    assert store.counts() == {"planned": 4, "running": 0, "interrupted": 0, "finished": 0,
                              "failed": 0}
    store.mark_running("c0-s0")
    store.mark_running("c1-s0")
    store.record_finished("c0-s0", *outputs())
    store.record_failed("c1-s0", "RuntimeError: boom")
    assert store.counts() == {"planned": 2, "running": 0, "interrupted": 0, "finished": 1,
                              "failed": 1}
    assert list(store.counts()) == list(STATUSES)
    (failed,) = store.runs("failed")
    assert failed.error == "RuntimeError: boom" and failed.attempts == 1
    (done,) = store.runs("finished")
    assert done.duration_s == 2.5 and done.summary["test_accuracy"] == 0.75
    assert done.started_at <= done.finished_at and done.error is None
    with pytest.raises(StoreError, match="already finished"):
        store.mark_running("c0-s0")
    with pytest.raises(StoreError, match="already finished"):
        store.record_failed("c0-s0", "late")
    with pytest.raises(StoreError, match="no planned run 'nope'"):
        store.mark_running("nope")
    with pytest.raises(StoreError,
                       match="statuses: planned, running, interrupted, finished, failed"):
        store.runs("done")
    assert store.reset_failed() == 1 and store.run("c1-s0").error is None
    store.mark_running("c1-s0")
    assert store.run("c1-s0").attempts == 2


def test_record_finished_is_idempotent(store: StudyStore) -> None:
    store.add_planned([planned(0)])
    summary, metrics, flow = outputs(epochs=5, points=3)
    store.record_finished("c0-s0", summary, metrics, flow)
    first = store.run("c0-s0")
    store.record_finished("c0-s0", summary, metrics, flow)
    assert store.run("c0-s0") == first  # finished_at kept: a replay changes nothing
    assert store.metrics("c0-s0") == metrics and store.gradflow("c0-s0") == flow
    conn = store._connection()
    assert conn.execute("SELECT COUNT(*) FROM metrics").fetchone()[0] == 5
    assert conn.execute("SELECT COUNT(*) FROM gradflow").fetchone()[0] == 3
    assert conn.execute("SELECT COUNT(*) FROM runs").fetchone()[0] == 1
    # A new recording replaces the old rows entirely (a shorter series leaves no leftovers).
    store.record_finished("c0-s0", *outputs(epochs=2, points=1, tag=1))
    assert [m["tag"] for m in store.metrics("c0-s0")] == [1, 1]
    assert len(store.gradflow("c0-s0")) == 1 and store.run("c0-s0").summary["tag"] == 1


def test_metrics_columns_are_queryable_and_non_finite_values_survive(store: StudyStore) -> None:
    store.add_planned([planned(0)])
    summary, metrics, flow = outputs(epochs=2)
    summary["egf2"] = math.nan
    metrics[1]["train_loss"] = math.inf
    metrics[0]["val_loss"] = -math.inf
    flow[0]["egf1"] = math.nan
    store.record_finished("c0-s0", summary, metrics, flow)
    assert math.isnan(store.run("c0-s0").summary["egf2"])
    assert store.metrics("c0-s0")[1]["train_loss"] == math.inf
    assert store.metrics("c0-s0")[0]["val_loss"] == -math.inf
    assert math.isnan(store.gradflow("c0-s0")[0]["egf1"])
    rows = store._connection().execute(
        "SELECT epoch, train_loss FROM metrics ORDER BY idx").fetchall()
    assert rows == [(1, 1.0), (2, math.inf)]  # a REAL column holds inf (NaN would be NULL)


def test_reset_stale(store: StudyStore) -> None:
    store.add_planned([planned(i) for i in range(3)])
    store.mark_running("c0-s0")
    store.mark_running("c1-s0")
    store.record_finished("c1-s0", *outputs())
    store.close()
    with StudyStore(store.study_dir, create=False) as again:  # the next driver
        assert again.reset_stale() == 1
        assert again.run("c0-s0").status == "planned" and again.run("c0-s0").started_at is None
        assert again.counts() == {"planned": 2, "running": 0, "interrupted": 0, "finished": 1,
                                  "failed": 0}
        assert again.reset_stale() == 0


def test_reader_sees_commits_of_the_writer(store: StudyStore) -> None:
    store.add_planned([planned(0)])
    with StudyStore(store.study_dir, create=False) as reader:
        assert reader.counts()["planned"] == 1
        store.record_finished("c0-s0", *outputs())
        assert reader.counts()["finished"] == 1 and len(reader.metrics("c0-s0")) == 3


def test_reconcile_records_runs_finished_on_disk(store: StudyStore) -> None:
    store.add_planned([planned(0), planned(1)])
    store.mark_running("c0-s0")
    summary, metrics, flow = outputs()
    run_dir = store.runs_dir / "c0-s0"
    atomic_write_json(run_dir / "metrics.json", metrics)
    atomic_write_json(run_dir / "gradflow.json", flow)
    atomic_write_json(run_dir / "summary.json", summary)
    (store.runs_dir / "c1-s0").mkdir()  # started, not finished: no summary
    assert store.reconcile() == 1
    assert store.run("c0-s0").status == "finished" and store.metrics("c0-s0") == metrics
    assert store.run("c1-s0").status == "planned" and store.reconcile() == 0


def test_closed_and_forked_use_is_refused(store: StudyStore) -> None:
    pid = os.fork()
    if pid == 0:  # child: the inherited store must refuse, not touch the parent's database
        try:
            store.counts()
        except StoreError:
            os._exit(0)
        os._exit(1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert store.counts()["planned"] == 0  # the parent's connection is intact
    store.close()
    store.close()
    with pytest.raises(StoreError, match="closed"):
        store.counts()


def test_recording_from_executor_threads(store: StudyStore) -> None:
    """A driver may record from pool callback threads; calls are serialized."""
    store.add_planned([planned(i) for i in range(16)])
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(lambda i: store.record_finished(f"c{i}-s0", *outputs()), range(16)))
    assert store.counts()["finished"] == 16
    assert store._connection().execute("SELECT COUNT(*) FROM metrics").fetchone()[0] == 48
