"""A damaged or tampered study directory is noticed, said in one line, and repaired.

Every case damages a real tiny study (trained once per module, copied per test): bytes of real
SQLite pages overwritten, files truncated or deleted, another run's files copied in.
"""

from __future__ import annotations

import json
import random
import shutil
import sqlite3
import struct
import warnings
from pathlib import Path

import pytest
import torch
import yaml

import sparseflow  # noqa: F401
from sparseflow.config import ExperimentConfig
from sparseflow.store import StoreError, StudyStore
from sparseflow.store.errors import StoreCorruptError
from sparseflow.studies import expand, run_study
from sparseflow.studies.spec import StudySpec
from sparseflow.train import run_experiment

from tests.test_cli import _assert_one_line_error, _run
from tests.test_studies_plan import spec_dict

SPEC = spec_dict(axes={"optim.name": ["adam"]}, variants=["NR"], seeds=2,
                 base={"data": {"name": "mnist1d", "num_samples": 300},
                       "model": {"hidden_layers": 1}, "train": {"epochs": 2, "batch_size": 64},
                       "gradflow": {"points": 2}},
                 scsdc={"sparse_width": 24, "dense_widths": [8]})


def _plan():
    return expand(StudySpec.model_validate(SPEC))


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished 4-run study (2 seeds × sparse/dense), every run trained alone."""
    root = tmp_path_factory.mktemp("pristine")
    (root / "spec.yaml").write_text(yaml.safe_dump(SPEC))
    out = run_study(_plan(), root / "study", jobs=1, vectorize="off")
    assert (out.finished, out.failed) == (4, 0)
    return root


@pytest.fixture
def study(pristine: Path, tmp_path: Path) -> Path:
    shutil.copytree(pristine, tmp_path / "copy")
    return tmp_path / "copy" / "study"


def _spec(study: Path) -> str:
    return str(study.parent / "spec.yaml")


def _snapshot(study: Path) -> dict:
    """What the store says about every run (the oracle a rebuild must reproduce)."""
    with StudyStore(study, readonly=True) as store:
        return {r.run_key: (r.status, r.summary, store.metrics(r.run_key),
                            store.gradflow(r.run_key)) for r in store.runs()}


def _pages(path: Path) -> tuple[bytes, int]:
    data = path.read_bytes()
    return data, struct.unpack(">H", data[16:18])[0]


def _metric_page(path: Path) -> int:
    """Index of a page holding metric rows: the one with most '"train_loss"' texts (the JSON
    copy of each row; summaries hold none)."""
    data, size = _pages(path)
    counts = [data[i:i + size].count(b'"train_loss"') for i in range(0, len(data), size)]
    return max(range(len(counts)), key=counts.__getitem__)


def _cli_error(argv: list[str], capsys, needle: str) -> None:
    code, _, err = _run(argv, capsys)
    _assert_one_line_error(code, err, needle)


def test_random_bytes_over_a_metrics_page_stop_every_command(study: Path, capsys) -> None:
    before = _snapshot(study)
    path = study / "study.sqlite"
    data, size = _pages(path)
    page = _metric_page(path)
    damaged = bytearray(data)
    rnd = random.Random(0)
    damaged[page * size:(page + 1) * size] = bytes(rnd.randrange(256) for _ in range(size))
    path.write_bytes(bytes(damaged))
    with pytest.raises(StoreCorruptError, match=r"study\.sqlite is corrupt .*--rebuild"):
        StudyStore(study, readonly=True)
    for argv in (["study", "status", str(study)], ["study", "export", str(study)],
                 ["study", "tests", str(study)], ["study", "correlate", str(study)],
                 ["study", "report", str(study), "--out", str(study.parent / "report")],
                 ["study", "run", _spec(study), "--dir", str(study), "--jobs", "1"]):
        _cli_error(argv, capsys, f"{path} is corrupt")
    assert not (study / "results.csv").exists() and not (study.parent / "report").exists()
    # The rebuild moves the damaged file aside and records every run again from its directory.
    code, out, err = _run(["study", "run", _spec(study), "--dir", str(study), "--jobs", "1",
                           "--rebuild"], capsys)
    assert code == 0, err
    notes = [ln for ln in out.splitlines() if "rebuilt it from the run directories" in ln]
    assert len(notes) == 1 and "(4 finished runs recorded)" in notes[0]
    assert notes[0].startswith(f"moved {path} aside to study.sqlite.corrupt-")
    assert "0 runs finished, 0 failed, 4 already done" in out
    assert _snapshot(study) == before
    kept = list(study.glob("study.sqlite.corrupt-*"))
    assert len(kept) == 1 and kept[0].read_bytes() == bytes(damaged)


def test_garbage_inside_a_stored_summary_passes_quick_check_but_is_caught(study: Path,
                                                                          capsys) -> None:
    path = study / "study.sqlite"
    data = path.read_bytes()
    at = data.index(b'"stop_reason": ')  # inside the JSON text of a summary (only there)
    damaged = data[:at] + b"\x00\xff{{" + data[at + 4:]
    path.write_bytes(damaged)
    with sqlite3.connect(f"file:{path}?mode=ro&immutable=1", uri=True) as raw:
        assert raw.execute("PRAGMA integrity_check").fetchone()[0] == "ok"  # SQLite sees none
    raw.close()
    for argv in (["study", "status", str(study)], ["study", "export", str(study)],
                 ["study", "tests", str(study)]):
        _cli_error(argv, capsys, "undecodable runs.summary")


def test_a_file_that_is_no_database_names_the_rebuild(study: Path, capsys) -> None:
    path = study / "study.sqlite"
    path.write_bytes(b"\x13" * 100 + path.read_bytes()[100:])  # the header page destroyed
    _cli_error(["study", "status", str(study)], capsys, "is corrupt (file is not a database)")


def test_a_deleted_store_is_rebuilt_and_says_so(study: Path, capsys) -> None:
    before = _snapshot(study)
    (study / "study.sqlite").unlink()
    code, out, err = _run(["study", "run", _spec(study), "--dir", str(study), "--jobs", "1"],
                          capsys)
    assert code == 0, err
    lines = [ln for ln in out.splitlines() if "was missing" in ln]
    assert len(lines) == 1 and "rebuilt it from the run directories (4 finished runs" in lines[0]
    assert "0 runs finished, 0 failed, 4 already done" in out
    assert _snapshot(study) == before


# Run directories are checked against the plan --------------------------------------------------
def _keys(study: Path) -> dict[tuple[str, int], str]:
    """(kind, seed) → run key."""
    with StudyStore(study, readonly=True) as store:
        return {(r.kind, r.seed): r.run_key for r in store.runs()}


def test_another_seeds_summary_is_not_recorded(study: Path, capsys) -> None:
    keys = _keys(study)
    ours, theirs = study / "runs" / keys["sparse", 1], study / "runs" / keys["sparse", 0]
    shutil.copy(theirs / "summary.json", ours / "summary.json")
    (study / "study.sqlite").unlink()  # the driver must read the run directories again
    out = run_study(_plan(), study, jobs=1, vectorize="off")
    assert (out.finished, out.failed) == (0, 1)
    with StudyStore(study, readonly=True) as store:
        rec = store.run(keys["sparse", 1])
        assert rec.status == "failed" and rec.summary is None
        assert f"{ours / 'summary.json'} is the result of run" in rec.error
        assert "seed 0, not of" in rec.error and f"remove {ours}" in rec.error
        assert store.counts()["finished"] == 3
    code, out_text, _ = _run(["study", "status", str(study)], capsys)
    assert code == 0 and "is the result of run" in out_text


def test_a_truncated_metric_series_is_not_recorded(study: Path) -> None:
    keys = _keys(study)
    run_dir = study / "runs" / keys["dense", 0]
    rows = json.loads((run_dir / "metrics.json").read_text())
    assert len(rows) == 2
    (run_dir / "metrics.json").write_text(json.dumps(rows[:1]))
    (study / "study.sqlite").unlink()
    out = run_study(_plan(), study, jobs=1, vectorize="off")
    assert out.failed == 1
    with StudyStore(study, readonly=True) as store:
        rec = store.run(keys["dense", 0])
        assert rec.status == "failed" and store.metrics(rec.run_key) == []
        assert "has 1 epoch rows but summary.json says 2 epochs" in rec.error


def test_a_foreign_checkpoint_is_ignored_and_the_run_starts_afresh(tmp_path: Path,
                                                                   tiny_config) -> None:
    cfg0 = ExperimentConfig.model_validate(tiny_config(seed=0))
    cfg1 = ExperimentConfig.model_validate(tiny_config(seed=1))
    part0 = run_experiment(cfg0, tmp_path / "runs", until_epoch=1)
    part1 = run_experiment(cfg1, tmp_path / "runs", until_epoch=1)
    assert part0.status == part1.status == "partial"
    shutil.copy(part0.run_dir / "checkpoint.pt", part1.run_dir / "checkpoint.pt")
    with pytest.warns(RuntimeWarning, match="checkpoint of run .* seed 0, not of this run"):
        done = run_experiment(cfg1, tmp_path / "runs")
    assert done.status == "finished" and done.summary["resumed"] is False
    alone = run_experiment(cfg1, tmp_path / "alone")
    a = torch.load(done.run_dir / "final.pt", weights_only=True)
    b = torch.load(alone.run_dir / "final.pt", weights_only=True)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_the_own_checkpoint_still_resumes(tmp_path: Path, tiny_config) -> None:
    cfg = ExperimentConfig.model_validate(tiny_config(seed=3))
    part = run_experiment(cfg, tmp_path / "runs", until_epoch=1)
    ck = torch.load(part.run_dir / "checkpoint.pt", weights_only=True)
    assert (ck["run_id"], ck["seed"]) == (json.loads((part.run_dir / "config.json").read_text())
                                          ["id"], 3)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        done = run_experiment(cfg, tmp_path / "runs")
    assert done.summary["resumed"] is True


# Readers never write ---------------------------------------------------------------------------
def _listing(root: Path) -> dict[str, tuple[int, int]]:
    """Every path of the study but the report's own output folder ``report/``."""
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in root.rglob("*") if p.relative_to(root).parts[0] != "report"}


def test_reading_commands_create_nothing_in_the_study(study: Path, tmp_path: Path,
                                                      capsys) -> None:
    before = _listing(study)
    for argv in (["study", "status", str(study)], ["study", "tests", str(study)],
                 ["study", "correlate", str(study)],
                 ["study", "export", str(study), "--out", str(tmp_path / "r.csv")],
                 ["study", "report", str(study), "--out", str(tmp_path / "report")]):
        code, _, err = _run(argv, capsys)
        assert code == 0, (argv, err)
    assert _listing(study) == before  # no -wal, no -shm, no lock, nothing touched
    assert (tmp_path / "r.csv").is_file() and (tmp_path / "report").is_file()


def test_a_reader_opens_while_a_writer_holds_the_store(study: Path) -> None:
    with StudyStore(study) as writer:  # -wal and -shm exist while a driver has it open
        writer.reset_stale()
        assert (study / "study.sqlite-wal").exists()
        with StudyStore(study, readonly=True) as reader:
            assert reader.counts()["finished"] == 4
            with pytest.raises(StoreError, match="readonly"):
                reader.reset_stale()


@pytest.mark.skipif(not hasattr(__import__("os"), "geteuid") or __import__("os").geteuid() == 0,
                    reason="root ignores directory permissions")
def test_a_study_in_a_read_only_directory_can_be_read(study: Path, capsys) -> None:
    study.chmod(0o555)
    try:
        code, out, err = _run(["study", "status", str(study)], capsys)
        assert code == 0, err
        assert "4 runs" in out
    finally:
        study.chmod(0o755)


# Lost or damaged finished runs are trained again ---------------------------------------------
def test_a_deleted_run_and_a_damaged_final_pt_are_retrained_bitwise(study: Path,
                                                                    capsys) -> None:
    keys = _keys(study)
    gone, broken = study / "runs" / keys["sparse", 0], study / "runs" / keys["dense", 1]
    want = {d.name: torch.load(d / "final.pt", weights_only=True) for d in (gone, broken)}
    shutil.rmtree(gone)
    data = bytearray((broken / "final.pt").read_bytes())
    middle = len(data) // 2
    data[middle:middle + 64] = bytes(64)  # zeros over the saved tensors
    (broken / "final.pt").write_bytes(bytes(data))
    code, out, err = _run(["study", "status", str(study)], capsys)
    assert code == 0, err
    assert f"{gone.name}: its run directory is missing" in out
    assert f"{broken.name}: final.pt" in out and "2 finished runs need training again" in out
    notes: list[str] = []
    result = run_study(_plan(), study, jobs=1, vectorize="off", on_note=notes.append)
    assert (result.finished, result.skipped) == (2, 2)
    assert len(notes) == 2 and all("training it again" in n for n in notes)
    for name, state in want.items():
        again = torch.load(study / "runs" / name / "final.pt", weights_only=True)
        assert all(torch.equal(again[k], state[k]) for k in state)
    with StudyStore(study, readonly=True) as store:
        assert store.counts()["finished"] == 4 and store.damaged_runs() == []
        assert all(len(store.metrics(k)) == 2 for k in keys.values())
