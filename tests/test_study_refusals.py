"""A refused `study run` leaves nothing behind; a shrunk spec analyses its own runs."""

from __future__ import annotations

import csv
import socket
from pathlib import Path

import pytest
import yaml

import sparseflow  # noqa: F401
from sparseflow.errors import ConfigError
from sparseflow.store import StudyStore
from sparseflow.studies import executor, expand
from sparseflow.studies.spec import StudySpec

from tests.test_cli import _assert_one_line_error, _run
from tests.test_studies_plan import spec_dict


def _tiny(**over) -> dict:
    """2 cells × 1 dense width × seeds: a few seconds of training."""
    base = spec_dict(axes={}, variants=["NR", "BN"],
                     scsdc={"sparse_width": 16, "dense_widths": [8]}, seeds=2)
    base["base"] = {**base["base"], "train": {"epochs": 1, "batch_size": 64},
                    "data": {"name": "mnist1d", "num_samples": 400}}
    return {**base, **over}


def _write(tmp_path: Path, name: str, data: dict) -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data))
    return path


def _snapshot(study: Path) -> tuple[bytes, int, dict[str, int]]:
    lock = study / ".lock"
    with StudyStore(study, create=False) as store:
        counts = store.counts()
    return lock.read_bytes(), lock.stat().st_mtime_ns, counts


def test_missing_dataset_is_refused_before_anything_exists(tmp_path: Path, capsys) -> None:
    data = {"name": "fashion_mnist", "root": str(tmp_path / "no_such_folder")}
    spec = _tiny()
    spec["base"] = {**spec["base"], "data": data}
    path = _write(tmp_path, "fm.yaml", spec)
    study = tmp_path / "study"
    code, _, err = _run(["study", "run", str(path), "--dir", str(study), "--jobs", "1"], capsys)
    _assert_one_line_error(code, err, "needs dataset fashion_mnist")
    assert "sparseflow data download fashion_mnist" in err
    assert not study.exists()


def test_unanswering_ray_address_leaves_no_directory(tmp_path: Path, capsys) -> None:
    with socket.socket() as s:  # a port nothing listens on once closed
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    path = _write(tmp_path, "s.yaml", _tiny())
    study = tmp_path / "study"
    code, _, err = _run(["study", "run", str(path), "--dir", str(study), "--executor", "ray",
                         "--address", f"127.0.0.1:{port}"], capsys)
    assert code == 2 and "Traceback" not in err
    assert not study.exists()


def test_a_later_refusal_removes_a_directory_it_created(tmp_path: Path, monkeypatch) -> None:
    def refuse(*args, **kwargs):
        raise ConfigError("refused after the store was created")

    monkeypatch.setattr(executor, "_backend", refuse)
    plan = expand(StudySpec.model_validate(_tiny()))
    study = tmp_path / "new" / "study"
    with pytest.raises(ConfigError, match="refused after"):
        executor.run_study(plan, study, jobs=1)
    assert not (tmp_path / "new").exists()  # the parent it created too
    # an existing directory is never removed
    study.mkdir(parents=True)
    (study / "keep.txt").write_text("mine")
    with pytest.raises(ConfigError, match="refused after"):
        executor.run_study(plan, study, jobs=1)
    assert (study / "keep.txt").read_text() == "mine"


def _export_rows(study: Path, capsys, *extra: str) -> tuple[list[dict], str]:
    out = study / "out.csv"
    code, _, err = _run(["study", "export", str(study), "--out", str(out), *extra], capsys)
    assert code == 0, err
    with out.open() as f:
        return list(csv.DictReader(f)), err


def test_changed_specs_are_refused_untouched_and_shrunk_specs_analyse_their_plan(
        tmp_path: Path, capsys) -> None:
    study = tmp_path / "study"
    path = _write(tmp_path, "s.yaml", _tiny())
    code, _, err = _run(["study", "run", str(path), "--dir", str(study), "--jobs", "1"], capsys)
    assert code == 0, err
    before = _snapshot(study)
    assert before[2]["finished"] == 8

    # a variant name that now means other overrides would put new runs in the old cells
    redef = _write(tmp_path, "redef.yaml",
                   _tiny(variant_defs={"NR": {"regularization.l2": 0.01}}))
    code, _, err = _run(["study", "run", str(redef), "--dir", str(study)], capsys)
    _assert_one_line_error(code, err, "variant 'NR' meant {}")
    assert _snapshot(study) == before  # lock bytes and mtime, store: untouched

    # a changed base config: refused as before, and the lock is not rewritten either
    other = _tiny()
    other["base"] = {**other["base"], "model": {"hidden_layers": 1}}
    code, _, err = _run(["study", "run", str(_write(tmp_path, "o.yaml", other)), "--dir",
                         str(study)], capsys)
    _assert_one_line_error(code, err, "different base configuration")
    assert _snapshot(study) == before

    # a new variant name is a growth, not a change: accepted
    grown = _write(tmp_path, "grown.yaml", _tiny(variants=["NR", "BN", "L2NEW"],
                                                 variant_defs={"L2NEW": {
                                                     "regularization.l2": 0.01}}, seeds=1))
    code, out, err = _run(["study", "run", str(grown), "--dir", str(study), "--jobs", "1"],
                          capsys)
    assert code == 0, err
    flat = " ".join(out.split())
    assert "2 runs finished, 0 failed, 4 already done, of 6 planned" in flat
    # the closing table covers the 6 planned runs (3 cells, 1 seed) and says so
    assert "covering the current plan's 6 runs; 4 stored runs outside it" in err

    rows, err = _export_rows(study, capsys)
    assert len(rows) == 6 and {r["seed"] for r in rows} == {"0"}
    assert "--all-runs includes them" in err
    rows, err = _export_rows(study, capsys, "--all-runs")
    assert len(rows) == 10 and "covering all stored runs, 4 of them outside" in err

    code, out, err = _run(["study", "tests", str(study), "--format", "csv"], capsys)
    assert code == 0, err
    table = list(csv.DictReader(out.splitlines()))
    assert {r["variant"]: r["n"] for r in table} == {"NR": "1", "BN": "1", "L2NEW": "1"}
    code, out, _ = _run(["study", "tests", str(study), "--format", "csv", "--all-runs"],
                        capsys)
    table = list(csv.DictReader(out.splitlines()))
    assert {r["variant"]: r["n"] for r in table} == {"NR": "2", "BN": "2", "L2NEW": "1"}

    # a variant dropped from the spec keeps its meaning: redefining it later is still refused
    only_bn = _write(tmp_path, "bn.yaml", _tiny(variants=["BN"], seeds=1))
    code, _, err = _run(["study", "run", str(only_bn), "--dir", str(study), "--jobs", "1"],
                        capsys)
    assert code == 0, err
    back = _write(tmp_path, "back.yaml", _tiny(variants=["BN", "L2NEW"], seeds=1,
                                               variant_defs={"L2NEW": {
                                                   "regularization.l2": 0.02}}))
    code, _, err = _run(["study", "run", str(back), "--dir", str(study)], capsys)
    _assert_one_line_error(code, err, "variant 'L2NEW' meant")
