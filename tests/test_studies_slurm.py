"""The Slurm executor, for real without a cluster: submitit's local executor runs each array
task as a subprocess tree (controller + task), as sbatch would on a node. A task that is
killed is resubmitted (or, retries spent, its runs fail and the next `study run` retries
them); a run that raises in training is recorded failed with its error; a preempted task
requeues itself and resumes; `study collect` records what a driver that stopped waiting left,
idempotently. Results equal the local executor's, bitwise (runs pin their threads)."""

from __future__ import annotations

import functools
import importlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

pytest.importorskip("submitit", reason="the slurm executor needs submitit: pip install "
                    "'sparseflow[slurm]'")

import sparseflow  # noqa: E402,F401
from sparseflow import plugins  # noqa: E402
from sparseflow.errors import ConfigError  # noqa: E402
from sparseflow.store import StudyStore  # noqa: E402
from sparseflow.studies import expand, run_study  # noqa: E402
from sparseflow.studies import slurm_backend as sb  # noqa: E402
from sparseflow.studies.collect import collect_study  # noqa: E402
from sparseflow.studies.grouping import group_runs  # noqa: E402
from sparseflow.studies.plan import Plan  # noqa: E402
from sparseflow.studies.slurm_jobs import attach, is_active, load_tasks, state_of  # noqa: E402
from sparseflow.studies.spec import SlurmSpec, StudySpec  # noqa: E402

from tests.test_studies_plan import spec_dict  # noqa: E402

SRC = str(Path(__file__).resolve().parents[1] / "src")
HELPER = "slurm_test_helper"
HELPER_CODE = '''
"""Test components for the Slurm executor tests (imported by the driver and every task)."""
import os
from pathlib import Path

from torch import nn

from sparseflow.registry import ACTIVATIONS
from sparseflow.studies.worker import execute_group


class Boom(nn.Module):
    def forward(self, x):
        raise RuntimeError("boom in training")


@ACTIVATIONS.register("slurm_test_boom")
def boom(num_features: int) -> nn.Module:
    """An activation whose forward raises: a run that fails in training."""
    return Boom()


def kill_first(items, runs_dir):
    """A task body that kills its own process the first time it meets the victim run."""
    victim, marker = os.environ.get("SF_TEST_VICTIM"), Path(os.environ["SF_TEST_MARKER"])
    if any(key == victim for key, _ in items) and not marker.exists():
        marker.touch()
        os._exit(1)  # no result, no exception: a killed task, as submitit sees it
    return execute_group(items, runs_dir)
'''


@pytest.fixture(scope="module")
def helper_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("plugin")
    (folder / f"{HELPER}.py").write_text(HELPER_CODE)
    return folder


@pytest.fixture()
def helper(helper_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[object]:
    """The helper module importable here and in every task (PYTHONPATH is inherited).

    The process's record of loaded plugins is restored afterwards: studies that later tests
    start from this process must not try to import the helper in workers that cannot see it.
    """
    monkeypatch.setattr(plugins, "_LOADED", [])
    monkeypatch.syspath_prepend(str(helper_dir))
    paths = [str(helper_dir), SRC, os.environ.get("PYTHONPATH", "")]
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(p for p in paths if p))
    yield importlib.import_module(HELPER)


def _plan(**over) -> Plan:
    base = spec_dict(axes={"model.activation": ["relu", "slurm_test_boom"]}, variants=["NR"],
                     seeds=1, scsdc={"sparse_width": 40, "dense_widths": [8]},
                     plugins=[HELPER])
    return expand(StudySpec.model_validate({**base, **over}))


def _local(cluster_opts: dict | None = None) -> SlurmSpec:
    return SlurmSpec(**{"cluster": "local", "runs_per_task": 2, **(cluster_opts or {})})


def _rows(study: Path) -> dict[str, dict]:
    with StudyStore(study, create=False) as store:
        return {r["run_key"]: r for r in store.results()}


def _assert_same_store(slurm: Path, local: Path, plan: Plan) -> None:
    got, want = _rows(slurm), _rows(local)
    assert set(got) == set(want) == {r.run_key for r in plan.runs}
    for key, row in got.items():
        assert row["status"] == want[key]["status"], key
        assert row["test_accuracy"] == want[key]["test_accuracy"], key  # bitwise
        assert row["egf2"] == want[key]["egf2"], key
    with StudyStore(slurm, create=False) as a, StudyStore(local, create=False) as b:
        for rec in a.runs("finished"):
            epochs = rec.summary["epochs"]
            assert len(a.metrics(rec.run_key)) == len(b.metrics(rec.run_key)) == epochs


def _kill_victim(monkeypatch: pytest.MonkeyPatch, helper: object, victim: str,
                 marker: Path) -> None:
    monkeypatch.setenv("SF_TEST_VICTIM", victim)
    monkeypatch.setenv("SF_TEST_MARKER", str(marker))
    monkeypatch.setattr(sb, "slurm_backend",
                        functools.partial(sb.slurm_backend, execute=helper.kill_first))


def test_killed_task_is_resubmitted_failing_run_recorded_same_as_local(
        helper: object, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    plan = _plan()
    ok = [r.run_key for r in plan.runs if r.cell["model.activation"] == "relu"]
    marker = tmp_path / "killed"
    _kill_victim(monkeypatch, helper, ok[0], marker)
    out = run_study(plan, tmp_path / "slurm", executor="slurm", vectorize="off",
                    slurm=_local({"max_retries": 1}))
    assert marker.exists(), "the victim's task was never killed"
    assert (out.finished, out.failed) == (2, 2)
    run_study(plan, tmp_path / "local", jobs=1, vectorize="off")
    _assert_same_store(tmp_path / "slurm", tmp_path / "local", plan)
    with StudyStore(tmp_path / "slurm", create=False) as store:
        errors = {r.run_key: r.error for r in store.runs("failed")}
    assert set(errors) == set(_rows(tmp_path / "slurm")) - set(ok)
    assert all("RuntimeError: boom in training" in e for e in errors.values()), errors
    tasks = load_tasks(tmp_path / "slurm")
    assert len(tasks) == 3 and all(t.settled for t in tasks)  # 2 tasks + 1 resubmission
    (killed,) = [t for t in tasks if t.error]
    assert killed.run_keys == ok and "ended without a result" in killed.error
    (retry,) = [t for t in tasks if t.attempt == 1]
    assert retry.run_keys == ok and retry.state == "FINISHED"
    # collect after a driver that waited: nothing left, nothing recorded twice
    before = _rows(tmp_path / "slurm")
    done = collect_study(tmp_path / "slurm")
    assert (done.finished, done.failed, done.active_tasks) == (0, 0, 0)
    assert _rows(tmp_path / "slurm") == before


def test_spent_retries_fail_the_runs_and_next_run_retries(
        helper: object, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    plan = _plan(axes={"model.activation": ["relu"]})
    victim = plan.runs[0].run_key
    with monkeypatch.context() as m:
        _kill_victim(m, helper, victim, tmp_path / "killed")
        out = run_study(plan, tmp_path / "s", executor="slurm", vectorize="off",
                        slurm=_local({"max_retries": 0, "runs_per_task": 1}))
    assert (out.finished, out.failed) == (1, 1)
    with StudyStore(tmp_path / "s", create=False) as store:
        (failed,) = store.runs("failed")
    assert failed.run_key == victim
    assert failed.error.startswith("slurm task ") and "ended without a result" in failed.error
    again = run_study(plan, tmp_path / "s", executor="slurm", slurm=_local())
    assert (again.finished, again.failed, again.skipped) == (1, 0, 1)
    run_study(plan, tmp_path / "local", jobs=1)
    _assert_same_store(tmp_path / "s", tmp_path / "local", plan)


def _wait_ended(study: Path, timeout_s: float = 120.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        tasks = load_tasks(study)
        if not any(is_active(state_of(attach(study, t), t.cluster)) for t in tasks):
            return
        time.sleep(0.2)
    raise AssertionError("the tasks did not end")


def _children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(p) for p in path.read_text().split()] if path.exists() else []


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="finds the task by /proc")
def test_preempted_task_requeues_and_resumes(helper: object, tmp_path: Path) -> None:
    """USR2 (Slurm's warning before a time limit or preemption) mid-training: the task
    checkpoints itself, is requeued, and its run resumes to the same result."""
    plan = _plan(axes={"model.activation": ["relu"]},
                 base={**spec_dict()["base"], "train": {"epochs": 4, "batch_size": 16},
                       "data": {"name": "mnist1d", "num_samples": 2000}})
    key = plan.runs[0].run_key
    study = tmp_path / "s"
    run_study(plan, study, executor="slurm", vectorize="off", wait=False, slurm=_local())
    (task,) = load_tasks(study)
    metrics = study / "runs" / key / "metrics.json"
    deadline = time.monotonic() + 120
    while not (metrics.exists() and json.loads(metrics.read_text())):
        assert time.monotonic() < deadline, "the run never wrote an epoch"
        time.sleep(0.05)
    assert not (study / "runs" / key / "summary.json").exists(), "too fast to preempt"
    (task_pid,) = _children(int(task.job_id))
    os.kill(task_pid, signal.SIGUSR2)
    _wait_ended(study)
    done = collect_study(study)
    assert (done.finished, done.failed, done.active_tasks) == (2, 0, 0)
    log = next((study / "slurm" / "logs" / task.job_id).glob("*_log.err")).read_text()
    assert "this job is preempted" in log, log[-2000:]  # then it finished: requeued
    run_study(plan, tmp_path / "local", jobs=1)
    _assert_same_store(study, tmp_path / "local", plan)


def test_cli_no_wait_status_and_collect_twice(helper: object, tmp_path: Path) -> None:
    spec = spec_dict(axes={"optim.name": ["sgd"]}, variants=["NR"], seeds=2,
                     scsdc={"sparse_width": 40, "dense_widths": [8]},
                     slurm={"cluster": "local", "runs_per_task": 2})
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(spec))
    cli = [sys.executable, "-m", "sparseflow", "study"]
    done = subprocess.run([*cli, "run", "s.yaml", "--dir", "study", "--executor", "slurm",
                           "--no-wait", "--slurm-runs-per-task", "4"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "submitted;" in done.stdout
    study = tmp_path / "study"
    (task,) = load_tasks(study)  # the flag won over the spec's 2 runs per task
    assert len(task.run_keys) == 4
    status = subprocess.run([*cli, "status", "study"], cwd=tmp_path, capture_output=True,
                            text=True, timeout=60)
    assert status.returncode == 0 and task.job_id in status.stdout, status.stdout
    _wait_ended(study)
    first = subprocess.run([*cli, "collect", "study"], cwd=tmp_path, capture_output=True,
                           text=True, timeout=60)
    assert "recorded 4 finished and 0 failed runs; 0 tasks still active" in first.stdout, \
        first.stdout + first.stderr
    rows = _rows(study)
    second = subprocess.run([*cli, "collect", "study"], cwd=tmp_path, capture_output=True,
                            text=True, timeout=60)
    assert "recorded 0 finished and 0 failed runs" in second.stdout
    assert _rows(study) == rows and {r["status"] for r in rows.values()} == {"finished"}
    status = subprocess.run([*cli, "status", "study"], cwd=tmp_path, capture_output=True,
                            text=True, timeout=60)
    assert "FINISHED" in status.stdout and "not recorded yet" not in status.stdout


def test_a_new_driver_waits_for_active_tasks_instead_of_resubmitting(
        helper: object, tmp_path: Path) -> None:
    plan = _plan(axes={"model.activation": ["relu"]})
    study = tmp_path / "s"
    run_study(plan, study, executor="slurm", wait=False, slurm=_local({"runs_per_task": 2}))
    out = run_study(plan, study, executor="slurm", slurm=_local({"runs_per_task": 2}))
    assert out.finished + out.skipped == 2 and out.failed == 0
    assert len(load_tasks(study)) == 1  # adopted, not submitted twice


def test_slurm_section_is_no_part_of_identity() -> None:
    base = spec_dict(axes={"optim.name": ["sgd"]}, variants=["NR"], seeds=1)
    plain = expand(StudySpec.model_validate(base))
    with_slurm = expand(StudySpec.model_validate(
        {**base, "slurm": {"partition": "gpu", "time_min": 5, "sbatch": {"account": "x"}}}))
    assert plain.fingerprint == with_slurm.fingerprint
    assert [r.run_key for r in plain.runs] == [r.run_key for r in with_slurm.runs]
    assert "slurm" not in with_slurm.spec.model_dump(mode="json")  # not stored with the study


def test_chunks_never_split_a_group_and_follow_measured_durations() -> None:
    plan = expand(StudySpec.model_validate(spec_dict()))  # 32 runs, groups of up to 8
    groups = group_runs(plan.runs, max_group=4)
    chunks = sb.chunk_groups(groups, 6)
    assert [g for c in chunks for g in c] == groups
    assert all(sum(len(g.runs) for g in c) <= 6 or len(c) == 1 for c in chunks)
    opts = SlurmSpec(task_minutes=10, runs_per_task=3)
    assert sb.runs_per_task(opts, {}) == 3
    assert sb.runs_per_task(opts, {"a": [60.0, 120.0, 30.0]}) == 10  # median 60 s
    assert sb.runs_per_task(opts, {"a": [3600.0]}) == 1


def test_bad_slurm_input_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from sparseflow.cli.slurm_opts import merged

    with pytest.raises(ConfigError, match=r"^--slurm-sbatch 'account': give NAME=VALUE"):
        merged(SlurmSpec(), sbatch=["account"])
    with pytest.raises(ConfigError, match=r"^slurm\.time_min: "):
        merged(SlurmSpec(), time_min=0)
    assert merged(SlurmSpec(sbatch={"qos": "a"}), sbatch=["--account=b"]).sbatch == {
        "qos": "a", "account": "b"}
    monkeypatch.setenv("PATH", str(tmp_path))  # no sbatch here
    with pytest.raises(ConfigError, match=r"^the slurm executor found no sbatch on PATH"):
        sb.check_slurm(SlurmSpec())
    monkeypatch.setitem(sys.modules, "submitit", None)
    with pytest.raises(ConfigError, match=r"^the slurm executor needs submitit: pip install "
                                          r"'sparseflow\[slurm\]'$"):
        sb.check_slurm(SlurmSpec(cluster="local"))
