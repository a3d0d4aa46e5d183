"""SIGINT and SIGTERM on real processes: one line, exit 130 / 143, no run left 'running', no
worker left alive, nothing recorded as finished that did not finish, and the rerun resumes to
bitwise the result of an uninterrupted one. Also: stale 'running' rows after a SIGKILL, a
vectorized group stopped while writing its results, the store's schema migration."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
import yaml

import sparseflow  # noqa: F401
from sparseflow.cli import main
from sparseflow.cli.interrupts import MESSAGE
from sparseflow.config import ExperimentConfig, build_config
from sparseflow.store import StoreError, StudyLock, StudyStore, driver_alive
from sparseflow.store.schema import _V1
from sparseflow.studies import expand, run_study
from sparseflow.studies.spec import StudySpec
from sparseflow.train import run_experiment
from sparseflow.train.vectorized import group as group_module
from sparseflow.train.vectorized import run_group

from tests.conftest import tiny
from tests.test_studies_plan import spec_dict

pytestmark = pytest.mark.skipif(not Path("/proc/self/stat").exists() or os.name != "posix",
                                reason="needs POSIX signals and /proc")
ENV = {**os.environ, "PYTHONUNBUFFERED": "1"}
WAIT_S = 180


def _wait_for(what: Callable[[], bool], proc: subprocess.Popen, why: str) -> None:
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline and proc.poll() is None:
        if what():
            return
        time.sleep(0.05)
    proc.kill()
    pytest.fail(f"{why} (exit code {proc.poll()})")


def _children(pid: int) -> list[int]:
    """Pids whose parent is ``pid`` (from /proc)."""
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            out.append(int(stat.parent.name))
    return out


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def _gone_soon(pids: list[int]) -> bool:
    """Whether every pid exits within a bounded wait (helpers such as multiprocessing's
    resource tracker exit when they notice their parent is gone)."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and any(_alive(p) for p in pids):
        time.sleep(0.05)
    return not any(_alive(p) for p in pids)


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _stop(proc: subprocess.Popen, sig: int) -> tuple[int, list[str]]:
    proc.send_signal(sig)
    try:
        _, err = proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        pytest.fail("the command did not stop within 60 s of the signal")
    return proc.returncode, err.decode().strip().splitlines()


def _weights_equal(a: Path, b: Path) -> bool:
    x, y = torch.load(a, weights_only=True), torch.load(b, weights_only=True)
    return x.keys() == y.keys() and all(torch.equal(x[k], y[k]) for k in x)


def _training(study: Path) -> Callable[[], bool]:
    return lambda: bool(list((study / "runs").glob("*/checkpoint.pt"))
                        or list((study / "runs").glob("_groups/*.pt")))


def _study_spec(tmp_path: Path) -> tuple[dict, Path]:
    spec = spec_dict(axes={"optim.name": ["sgd"]}, variants=["NR"], seeds=2,
                     scsdc={"sparse_width": 40, "dense_widths": [8]})
    spec["base"]["train"]["epochs"] = 6
    spec["base"]["data"]["num_samples"] = 2000
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(spec))
    return spec, path


@pytest.mark.parametrize(("sig", "code", "vectorize"),
                         [(signal.SIGINT, 130, "off"), (signal.SIGTERM, 143, "auto")])
def test_signal_on_study_run_stops_marks_and_resumes(tmp_path: Path, sig: int, code: int,
                                                     vectorize: str) -> None:
    spec, path = _study_spec(tmp_path)
    study = tmp_path / "study"
    cmd = [sys.executable, "-m", "sparseflow", "study", "run", str(path), "--dir", str(study),
           "--jobs", "2", "--vectorize", vectorize]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=ENV)
    _wait_for(_training(study), proc, "training never got under way")
    children = _children(proc.pid)
    workers = [p for p in children if "spawn_main" in _cmdline(p)]
    assert workers, "the driver has no worker processes"
    rc, err = _stop(proc, sig)
    assert rc == code and err == [MESSAGE], (rc, err)
    # The driver stopped and reaped its workers before it exited.
    assert not [p for p in workers if _alive(p)], "worker processes outlived the driver"
    assert _gone_soon(children), "a child process of the driver outlived it"
    with StudyStore(study, create=False) as store:
        runs = store.runs()
    assert not [r for r in runs if r.status == "running"]
    interrupted = [r.run_key for r in runs if r.status == "interrupted"]
    assert interrupted, "no run was marked interrupted"
    for r in runs:  # finished in the store ⇔ its run directory says finished
        done = (study / "runs" / r.run_key / "summary.json").is_file()
        assert (r.status == "finished") == done or (done and r.status == "interrupted"), r
    again = subprocess.run(cmd, capture_output=True, text=True, env=ENV, timeout=600)
    assert again.returncode == 0, again.stderr
    with StudyStore(study, create=False) as store:
        assert all(r.status == "finished" for r in store.runs())
        assert all(len(store.metrics(r.run_key)) == 6 for r in store.runs())
    assert not list(study.glob("runs/_groups/*"))
    _check_against_uninterrupted(spec, study, tmp_path / "ref", interrupted, vectorize)


def _check_against_uninterrupted(spec: dict, study: Path, ref: Path, keys: list[str],
                                 vectorize: str) -> None:
    plan = expand(StudySpec.model_validate(spec))
    by_key = {r.run_key: r for r in plan.runs}
    if vectorize == "off":
        for key in keys[:2]:
            alone = run_experiment(ExperimentConfig.model_validate(by_key[key].config), ref)
            assert _weights_equal(study / "runs" / key / "final.pt", alone.run_dir / "final.pt")
        return
    key = keys[0]  # its group, trained uninterrupted (the plan's seeds 0 and 1 of one cell)
    cfg = by_key[key].config
    members = [r for r in plan.runs if group_module.shape_key(r.config)
               == group_module.shape_key(cfg)]
    assert len(members) == 2
    whole = run_group([ExperimentConfig.model_validate(r.config) for r in members], ref)
    for r, res in zip(members, whole, strict=True):
        assert _weights_equal(study / "runs" / r.run_key / "final.pt", res.run_dir / "final.pt")


TRAIN = tiny(data={"num_samples": 2000}, model={"width": 64}, sparsity={"density": 0.3},
             optim={"name": "momentum", "lr": 0.05}, train={"epochs": 6, "batch_size": 32},
             gradflow={"points": 4})


@pytest.fixture
def train_reference(tmp_path: Path) -> Path:
    return run_experiment(build_config(TRAIN), tmp_path / "ref").run_dir


def test_sigint_on_train_stops_and_resumes_bitwise(tmp_path: Path,
                                                  train_reference: Path) -> None:
    sig, code = signal.SIGINT, 130  # SIGTERM: the study tests (the same handler)
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(TRAIN))
    out = tmp_path / "runs"
    cmd = [sys.executable, "-m", "sparseflow", "train", str(path), "--out", str(out), "-q"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=ENV)
    _wait_for(lambda: bool(list(out.glob("*/checkpoint.pt"))), proc, "no checkpoint written")
    rc, err = _stop(proc, sig)
    assert rc == code and err == [MESSAGE], (rc, err)
    (run_dir,) = out.iterdir()
    assert not (run_dir / "summary.json").exists() and not (run_dir / "final.pt").exists()
    again = subprocess.run(cmd, capture_output=True, text=True, env=ENV, timeout=300)
    assert again.returncode == 0, again.stderr
    assert _weights_equal(run_dir / "final.pt", train_reference / "final.pt")
    assert (run_dir / "gradflow.json").read_text() == \
        (train_reference / "gradflow.json").read_text()


def _status_rows(study: Path, capsys) -> dict[str, str]:
    main(["study", "status", str(study)])  # returns normally: exit code 0
    out = capsys.readouterr().out
    return {line.split("│")[1].strip(): line.split("│")[2].strip()
            for line in out.splitlines() if line.count("│") == 3}


def test_status_reports_running_rows_of_a_dead_driver_as_interrupted(tmp_path: Path,
                                                                       capsys) -> None:
    # What a SIGKILLed driver leaves (see test_studies_run's SIGKILL test): rows still
    # 'running' in the store, and a lock nobody holds.
    plan = expand(StudySpec.model_validate(spec_dict(seeds=1)))
    with StudyStore(tmp_path) as store:
        store.init_study("t", {}, plan.fingerprint)
        store.add_planned(plan.runs[:3])
        for run in plan.runs[:2]:
            store.mark_running(run.run_key)
    with StudyLock(tmp_path):  # a live driver: its runs are running
        assert driver_alive(tmp_path) is True
        rows = _status_rows(tmp_path, capsys)
        assert (rows["running"], rows["interrupted"]) == ("2", "0")
    assert driver_alive(tmp_path) is False
    rows = _status_rows(tmp_path, capsys)
    assert (rows["running"], rows["interrupted"], rows["planned"]) == ("0", "2", "1")
    with StudyStore(tmp_path, create=False) as store:  # status only reads
        assert store.counts()["running"] == 2
        assert store.mark_interrupted() == 2  # what the next `study run` does at its start
        assert store.counts()["interrupted"] == 2


def test_group_stopped_while_writing_results_resumes_bitwise(tmp_path: Path,
                                                             monkeypatch) -> None:
    spec = StudySpec.model_validate(spec_dict(axes={"optim.name": ["momentum"]},
                                              variants=["NR"], seeds=3,
                                              scsdc={"sparse_width": 40, "dense_widths": [8]}))
    plan = expand(spec)
    whole = run_study(plan, tmp_path / "whole", jobs=1)
    assert whole.groups == 2 and whole.finished == 6
    real_write, summaries = group_module.atomic_write_json, []

    def write_then_stop(path, obj):
        real_write(path, obj)
        if Path(path).name == "summary.json":
            summaries.append(path)
            raise KeyboardInterrupt  # stopped after the first member's result

    monkeypatch.setattr(group_module, "atomic_write_json", write_then_stop)
    with pytest.raises(KeyboardInterrupt):
        run_study(plan, tmp_path / "parts", jobs=1)
    monkeypatch.setattr(group_module, "atomic_write_json", real_write)
    with StudyStore(tmp_path / "parts", create=False) as store:
        counts = store.counts()
    assert counts["running"] == 0 and counts["interrupted"] == 3 and counts["planned"] == 3
    assert len(list((tmp_path / "parts" / "runs" / "_groups").glob("*.pt"))) == 1
    again = run_study(plan, tmp_path / "parts", jobs=1)
    assert (again.finished, again.skipped, again.groups) == (5, 1, 2)  # 1 recorded from disk
    assert not (tmp_path / "parts" / "runs" / "_groups").exists()
    for run in plan.runs:
        assert _weights_equal(tmp_path / "parts" / "runs" / run.run_key / "final.pt",
                              tmp_path / "whole" / "runs" / run.run_key / "final.pt"), run


def test_stale_group_checkpoints_are_removed(tmp_path: Path) -> None:
    plan = expand(StudySpec.model_validate(spec_dict(axes={"optim.name": ["sgd"]},
                                                     variants=["NR"], seeds=2,
                                                     scsdc={"sparse_width": 40,
                                                            "dense_widths": [8]})))
    stale = tmp_path / "runs" / "_groups"
    stale.mkdir(parents=True)
    (stale / "0123456789abcdef.pt").write_bytes(b"old")
    (stale / ".0123456789abcdef.pt.x1.tmp").write_bytes(b"torn")
    run_study(plan, tmp_path, jobs=1)
    assert not stale.exists()


def test_version_1_store_migrates_keeping_its_rows(tmp_path: Path) -> None:
    with sqlite3.connect(tmp_path / "study.sqlite") as raw:
        for statement in _V1.split(";"):
            if statement.strip():
                raw.execute(statement)
        raw.execute("INSERT INTO meta VALUES ('schema_version', '1')")
        raw.execute("INSERT INTO runs (run_key, config_id, seed, kind, dense_width, cell, "
                    "config, planned_at, status) VALUES ('a-s0', 'a', 0, 'dense', 8, '{}', "
                    "'{}', 'now', 'running')")
        raw.execute("INSERT INTO metrics (run_key, idx, epoch, data) VALUES "
                    "('a-s0', 0, 1, '{\"epoch\": 1}')")
    raw.close()
    with StudyStore(tmp_path, create=False) as store:
        assert store.metrics("a-s0") == [{"epoch": 1}]
        assert store.mark_interrupted() == 1
        assert store.run("a-s0").status == "interrupted"
        assert store._connection().execute("PRAGMA foreign_keys").fetchone()[0] == 1
        assert store._connection().execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    with pytest.raises(StoreError, match="unknown run status"):
        StudyStore(tmp_path, create=False).runs("stopped")


_REPRODUCE = """
import sys
from pathlib import Path
import sparseflow.presets as presets
presets.preset_path = lambda name, scale="cpu": Path(sys.argv[1])  # a tiny study as the preset
from sparseflow.cli import main
main(["reproduce", "bn", "--dir", sys.argv[2], "--jobs", "2"])
"""


def test_sigterm_on_reproduce_stops_and_marks(tmp_path: Path) -> None:
    """`sparseflow reproduce` (here with a tiny study in place of the preset file) goes through
    the same handler: exit 143, the one line, no run left running, no worker left alive."""
    _, path = _study_spec(tmp_path)
    study = tmp_path / "study"
    proc = subprocess.Popen([sys.executable, "-c", _REPRODUCE, str(path), str(study)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=ENV)
    _wait_for(_training(study), proc, "training never got under way")
    children = _children(proc.pid)
    rc, err = _stop(proc, signal.SIGTERM)
    assert rc == 143 and err == [MESSAGE], (rc, err)
    assert _gone_soon(children), "a child process of the driver outlived it"
    with StudyStore(study, readonly=True) as store:
        statuses = {r.status for r in store.runs()}
    assert "running" not in statuses and "interrupted" in statuses
    assert not (study / "report").exists()  # no report of an unfinished study


def test_an_interrupt_during_an_atomic_write_waits_for_the_file(tmp_path: Path) -> None:
    """A SIGINT that lands inside torch.save (a checkpoint) used to surface as torch's writer
    error (exit 1, a traceback); now it is raised once the file is complete and in place."""
    from sparseflow.cli.interrupts import Interrupted, handled
    from sparseflow.utils.atomic import atomic_torch_save

    class Signals:  # pickled by torch.save: sends the signal half-way through the write
        def __reduce__(self):
            os.kill(os.getpid(), signal.SIGINT)
            return (dict, ())

    path = tmp_path / "checkpoint.pt"
    with handled(), pytest.raises(Interrupted):
        atomic_torch_save({"big": torch.arange(1000.0), "signal": Signals()}, path)
    loaded = torch.load(path, weights_only=False)
    assert torch.equal(loaded["big"], torch.arange(1000.0)) and loaded["signal"] == {}
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint.pt"]  # no temporary left
