"""Running studies: store contents, idempotence, refusal cases, failures, SIGKILL + resume."""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

import sparseflow  # noqa: F401
from sparseflow.config import ExperimentConfig
from sparseflow.store import (
    StoreError,
    StudyBusyError,
    StudyLock,
    StudyMismatchError,
    StudyStore,
)
from sparseflow.studies import expand, run_study
from sparseflow.studies.spec import StudySpec
from sparseflow.train import run_experiment

from tests.test_studies_plan import spec_dict


def _spec(**over) -> StudySpec:
    return StudySpec.model_validate(spec_dict(**over))


def test_study_runs_pairs_and_is_idempotent(tmp_path: Path) -> None:
    plan = expand(_spec(axes={"optim.name": ["adam"]}, seeds=2))
    out = run_study(plan, tmp_path, jobs=2)
    assert (out.finished, out.failed, out.skipped) == (16, 0, 0)  # 2 variants·2 widths·2 seeds·2
    with StudyStore(tmp_path, create=False) as store:
        assert store.counts()["finished"] == 16
        rows = store.results()
        assert {r["kind"] for r in rows} == {"sparse", "dense"}
        for rec in store.runs():
            assert (tmp_path / "runs" / rec.run_key / "summary.json").is_file()
            assert len(store.metrics(rec.run_key)) == 2
            assert len(store.gradflow(rec.run_key)) == 3
    again = run_study(plan, tmp_path, jobs=2)
    assert (again.finished, again.skipped) == (0, 16)


def test_store_results_equal_separate_runs(tmp_path: Path) -> None:
    """A study's runs are exactly the runs `sparseflow train` would make of their configs."""
    plan = expand(_spec(axes={"optim.name": ["sgd"]}, variants=["NR"], seeds=1))
    run_study(plan, tmp_path / "study", jobs=1)
    run = next(r for r in plan.runs if r.kind == "sparse")
    alone = run_experiment(ExperimentConfig.model_validate(run.config), tmp_path / "alone")
    a = torch.load(tmp_path / "study" / "runs" / run.run_key / "final.pt", weights_only=True)
    b = torch.load(alone.run_dir / "final.pt", weights_only=True)
    assert all(torch.equal(a[k], b[k]) for k in a)
    with StudyStore(tmp_path / "study", create=False) as store:
        row = next(r for r in store.results() if r["run_key"] == run.run_key)
    assert row["test_accuracy"] == alone.summary["test_accuracy"]
    assert row["egf2"] == alone.summary["egf2"]


def test_changed_base_is_refused_and_busy_dir_refused(tmp_path: Path) -> None:
    run_study(expand(_spec(axes={"optim.name": ["sgd"]}, variants=["NR"], seeds=1,
                           scsdc={"sparse_width": 40, "dense_widths": [8]})), tmp_path, jobs=1)
    other = spec_dict(axes={"optim.name": ["sgd"]}, variants=["NR"], seeds=1)
    other["base"] = {**other["base"], "train": {"epochs": 3, "batch_size": 64}}
    with pytest.raises(StudyMismatchError):
        run_study(expand(StudySpec.model_validate(other)), tmp_path, jobs=1)
    with StudyLock(tmp_path), pytest.raises(StudyBusyError):
        run_study(expand(_spec()), tmp_path, jobs=1)


def test_failing_run_is_recorded_and_study_goes_on(tmp_path: Path) -> None:
    # lr = 1e6 with sgd overflows to NaN quickly but does not fail; a failure needs an error:
    # a dense width whose layer exceeds... is caught at plan time. Use a variant that breaks
    # at run time: a data subset larger than the data.
    spec = _spec(axes={"optim.name": ["sgd"]}, variants=["NR", "BIG"], seeds=1,
                 variant_defs={"BIG": {"data.train_subset": 10**6}},
                 scsdc={"sparse_width": 40, "dense_widths": [8]})
    out = run_study(expand(spec), tmp_path, jobs=1)
    assert (out.finished, out.failed) == (2, 2)
    with StudyStore(tmp_path, create=False) as store:
        failed = store.runs("failed")
        assert len(failed) == 2 and all("train_subset" in r.error for r in failed)
    stopped = run_study(expand(spec), tmp_path, jobs=1, fail_fast=True)
    assert stopped.aborted and stopped.failed == 1


def test_export_csv_has_contract_columns(tmp_path: Path) -> None:
    run_study(expand(_spec(axes={"optim.name": ["sgd"]}, variants=["NR"], seeds=1,
                           scsdc={"sparse_width": 40, "dense_widths": [8]})), tmp_path, jobs=1)
    with StudyStore(tmp_path, create=False) as store:
        path = store.export(tmp_path / "r.csv", "csv")
    with open(path) as fh:
        rows = list(csv.DictReader(fh))
    need = {"run_id", "kind", "sparse_width", "dense_width", "seed", "optim.name", "variant",
            "status", "test_accuracy", "test_loss", "egf1", "egf2", "gf1", "gf2", "epochs",
            "duration_s"}
    assert need <= set(rows[0]) and len(rows) == 2


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL")
def test_sigkill_study_then_resume_loses_nothing(tmp_path: Path) -> None:
    spec = spec_dict(axes={"optim.name": ["sgd", "adam"]}, variants=["NR"], seeds=2)
    spec["base"]["train"]["epochs"] = 8
    spec["base"]["data"]["num_samples"] = 3000
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(spec))
    study = tmp_path / "study"
    # Separate runs here (bitwise-exact resume); vectorized groups have their own kill test.
    cmd = [sys.executable, "-m", "sparseflow", "study", "run", str(path), "--dir", str(study),
           "--jobs", "2", "--vectorize", "off"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if (study / "study.sqlite").exists():
            try:
                with StudyStore(study, create=False) as store:
                    if store.counts().get("finished", 0) >= 3:
                        break
            except StoreError:  # the driver is still creating the schema
                pass
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    with StudyStore(study, create=False) as store:
        before = {r.run_key for r in store.runs("finished")}
    assert 0 < len(before) < 16, "kill landed before any or after all runs finished"
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    with StudyStore(study, create=False) as store:
        runs = store.runs()
        assert len(runs) == 16 and all(r.status == "finished" for r in runs)
        assert before <= {r.run_key for r in runs}
        assert len({r.run_key for r in runs}) == 16
        for r in runs:
            assert len(store.metrics(r.run_key)) == 8
    # Runs finished after the kill (the interrupted ones among them, resumed from their
    # checkpoints) are identical to uninterrupted ones.
    reference = tmp_path / "ref"
    plan = expand(StudySpec.model_validate(spec))
    after = [r for r in plan.runs if r.run_key not in before]
    assert after
    for run in after[:6]:
        alone = run_experiment(ExperimentConfig.model_validate(run.config), reference)
        a = torch.load(study / "runs" / run.run_key / "final.pt", weights_only=True)
        b = torch.load(alone.run_dir / "final.pt", weights_only=True)
        assert all(torch.equal(a[k], b[k]) for k in a)


def test_vectorize_auto_and_off_give_the_same_results(tmp_path: Path) -> None:
    spec = _spec(axes={"optim.name": ["adam", "momentum"]}, variants=["NR", "BN"], seeds=3,
                 scsdc={"sparse_width": 40, "dense_widths": [8, 16]})
    plan = expand(spec)
    auto = run_study(plan, tmp_path / "auto", jobs=2, vectorize="auto", max_group=8)
    off = run_study(plan, tmp_path / "off", jobs=2, vectorize="off")
    assert auto.groups == 16 and off.groups == 48  # 3 seeds per group of same-shape runs
    with StudyStore(tmp_path / "auto", create=False) as a, \
            StudyStore(tmp_path / "off", create=False) as b:
        ra = {r["run_key"]: r for r in a.results()}
        rb = {r["run_key"]: r for r in b.results()}
    assert ra.keys() == rb.keys() and len(ra) == 48
    for key, row in ra.items():
        assert row["status"] == rb[key]["status"] == "finished"
        assert abs(row["test_accuracy"] - rb[key]["test_accuracy"]) <= 0.005
        assert row["egf2"] == pytest.approx(rb[key]["egf2"], rel=1e-3)
