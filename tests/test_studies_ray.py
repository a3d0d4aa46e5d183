"""The Ray executor on a real single-machine Ray cluster (loopback only, shared by the module):
same results as the local executor, idempotent, lost workers retried."""

from __future__ import annotations

import functools
import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
import yaml

ray = pytest.importorskip("ray", reason="the ray executor needs Ray: pip install 'sparseflow[ray]'")

import sparseflow  # noqa: E402,F401
from sparseflow.errors import ConfigError  # noqa: E402
from sparseflow.store import StudyStore  # noqa: E402
from sparseflow.studies import expand, run_study  # noqa: E402
from sparseflow.studies import ray_backend as rb  # noqa: E402
from sparseflow.studies.plan import Plan  # noqa: E402
from sparseflow.studies.spec import StudySpec  # noqa: E402
from sparseflow.studies.worker import execute_group  # noqa: E402
from sparseflow.utils.atomic import read_json  # noqa: E402

from tests.test_studies_plan import spec_dict  # noqa: E402


@pytest.fixture(scope="module")
def cluster() -> Iterator[str]:
    """One local Ray cluster with 2 CPUs for the module; its address."""
    if ray.is_initialized():
        pytest.skip("a Ray session is already open in this process")
    address = rb.start_local_cluster(num_cpus=2)
    yield address
    ray.shutdown()


def _plan(**over) -> Plan:
    return expand(StudySpec.model_validate(spec_dict(**over)))


def _results(study: Path) -> dict[str, dict]:
    with StudyStore(study, create=False) as store:
        return {r["run_key"]: r for r in store.results()}


def _listening_hosts(root: int) -> set[str]:
    """Local addresses (hex, as /proc/net/tcp* writes them) that ``root``'s process tree listens
    on (Linux)."""
    parents = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            parents[int(stat.parent.name)] = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue  # the process ended meanwhile
    tree, grew = {root}, True
    while grew:
        new = {pid for pid, ppid in parents.items() if ppid in tree} - tree
        tree, grew = tree | new, bool(new)
    inodes = set()
    for pid in tree:
        for fd in Path(f"/proc/{pid}/fd").glob("*"):
            try:
                inodes.add(os.readlink(fd).removeprefix("socket:[").removesuffix("]"))
            except OSError:
                continue
    hosts = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            cols = line.split()
            if cols[3] == "0A" and cols[9] in inodes:  # 0A: LISTEN
                hosts.add(cols[1].split(":")[0])
    return hosts


def _is_loopback_hex(host: str) -> bool:
    if len(host) == 8:  # IPv4, bytes reversed: 127.x.y.z ends in 7F
        return host.endswith("7F")
    return host == "0" * 24 + "01000000" or (  # ::1, or ::ffff:127.x.y.z
        host.startswith("0" * 16 + "FFFF0000") and host.endswith("7F"))


def test_cluster_listens_on_loopback_only(cluster: str) -> None:
    assert cluster.startswith("127.0.0.1:")
    assert {n["NodeManagerAddress"] for n in ray.nodes()} == {"127.0.0.1"}
    if sys.platform.startswith("linux"):
        hosts = _listening_hosts(os.getpid())
        assert hosts and all(_is_loopback_hex(h) for h in hosts), hosts


def test_ray_study_equals_local_and_is_idempotent(cluster: str, tmp_path: Path) -> None:
    # 2 cells x 2 widths x 2 seeds x (sparse, dense) = 16 runs in 8 batched groups of 2:
    # `--vectorize on` batches without timing, so both studies train the same groups whatever
    # the load (with `auto` one might batch a group the other trains one by one).
    plan = _plan(axes={"optim.name": ["adam"]})
    out = run_study(plan, tmp_path / "ray", executor="ray", address=cluster, vectorize="on")
    assert (out.finished, out.failed, out.skipped, out.groups) == (16, 0, 0, 8)
    run_study(plan, tmp_path / "local", jobs=1, vectorize="on")  # in this process, its threads
    on_ray, local = _results(tmp_path / "ray"), _results(tmp_path / "local")
    assert set(on_ray) == set(local) == {r.run_key for r in plan.runs}
    for key, row in on_ray.items():
        assert row["status"] == local[key]["status"] == "finished"
        assert row["test_accuracy"] == local[key]["test_accuracy"]
        assert row["egf2"] == local[key]["egf2"]
        a = torch.load(tmp_path / "ray" / "runs" / key / "final.pt", weights_only=True)
        b = torch.load(tmp_path / "local" / "runs" / key / "final.pt", weights_only=True)
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
        for side in ("ray", "local"):  # trained batched, not one by one
            assert "vectorized_group" in read_json(tmp_path / side / "runs" / key /
                                                   "summary.json")
    again = run_study(plan, tmp_path / "ray", executor="ray", address=cluster, vectorize="on")
    assert (again.finished, again.failed, again.skipped, again.groups) == (0, 0, 16, 0)


def test_portable_mode_reaches_the_tasks(cluster: str, tmp_path: Path,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """The module's cluster was started without SPARSEFLOW_PORTABLE; a driver that has it
    hands it to the tasks' workers, whose runs then compute on the AVX2 code paths."""
    if torch.backends.cpu.get_cpu_capability() not in ("AVX2", "AVX512"):
        pytest.skip("AVX2 code paths exist on x86-64 CPUs only")
    monkeypatch.setenv("SPARSEFLOW_PORTABLE", "1")
    plan = _plan(axes={"optim.name": ["sgd"]}, variants=["NR"], seeds=1)
    out = run_study(plan, tmp_path / "p", executor="ray", address=cluster, max_group=2)
    assert out.failed == 0
    for run in plan.runs:
        summary = json.loads((tmp_path / "p" / "runs" / run.run_key / "summary.json").read_text())
        rec = summary["reproducibility"]
        assert rec["mode"] == "portable" and rec["cpu_capability"] == "AVX2", rec


def test_cli_driver_connects_by_address(cluster: str, tmp_path: Path) -> None:
    """`study run --executor ray --address`: a driver process of its own joins the cluster."""
    spec = spec_dict(axes={"optim.name": ["sgd"]}, variants=["NR"], seeds=2,
                     scsdc={"sparse_width": 40, "dense_widths": [8]})
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(spec))
    # A relative --dir: workers get the absolute path, whatever their working directory.
    cmd = [sys.executable, "-m", "sparseflow", "study", "run", "s.yaml", "--dir", "study",
           "--executor", "ray", "--address", cluster]
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    done = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "4 runs finished, 0 failed" in done.stdout
    assert ray.is_initialized()  # the other driver left the cluster running
    with StudyStore(tmp_path / "study", create=False) as store:
        assert {r.status for r in store.runs()} == {"finished"}


def _crash_first(victim: str, marker: Path) -> rb.Execute:
    """A task body that kills its own worker process the first time it meets ``victim``
    (the marker file, on the shared filesystem, says it happened)."""

    # A closure, so that Ray ships it by value: workers need not import this test module.
    def execute(items: list, runs_dir: str) -> list:
        if any(key == victim for key, _ in items) and not marker.exists():
            marker.touch()
            os._exit(1)  # a lost worker, as Ray sees it: no exception, the process is gone
        return execute_group(items, runs_dir)

    return execute


def _with_execute(monkeypatch: pytest.MonkeyPatch, execute: rb.Execute) -> None:
    # run_study imports ray_backend when it runs, so patching the module attribute reaches it.
    monkeypatch.setattr(rb, "ray_backend", functools.partial(rb.ray_backend, execute=execute))


def test_lost_worker_is_retried(cluster: str, tmp_path: Path,
                                monkeypatch: pytest.MonkeyPatch) -> None:
    plan = _plan(axes={"optim.name": ["sgd"]}, variants=["NR"], seeds=2,
                 scsdc={"sparse_width": 40, "dense_widths": [8]})
    victim, marker = plan.runs[1].run_key, tmp_path / "crashed"
    _with_execute(monkeypatch, _crash_first(victim, marker))
    out = run_study(plan, tmp_path / "s", executor="ray", address=cluster, vectorize="off")
    assert marker.exists(), "the worker was never killed"
    assert (out.finished, out.failed) == (4, 0)
    with StudyStore(tmp_path / "s", create=False) as store:
        assert {r.status for r in store.runs()} == {"finished"}


def test_spent_retries_record_a_failure_and_next_run_retries(
        cluster: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    plan = _plan(axes={"optim.name": ["sgd"]}, variants=["NR"], seeds=1,
                 scsdc={"sparse_width": 40, "dense_widths": [8]})
    victim = plan.runs[0].run_key
    monkeypatch.setattr(rb, "MAX_RETRIES", 0)
    with monkeypatch.context() as m:
        _with_execute(m, _crash_first(victim, tmp_path / "crashed"))
        out = run_study(plan, tmp_path / "s", executor="ray", address=cluster, vectorize="off")
    assert (out.finished, out.failed) == (1, 1)
    with StudyStore(tmp_path / "s", create=False) as store:
        (failed,) = store.runs("failed")
    assert failed.run_key == victim
    assert failed.error.startswith("ray task failed (WorkerCrashedError): ")
    again = run_study(plan, tmp_path / "s", executor="ray", address=cluster)
    assert (again.finished, again.failed, again.skipped) == (1, 0, 1)


def test_missing_ray_is_a_one_line_config_error(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` now raises ImportError
    plan = _plan(axes={"optim.name": ["sgd"]}, variants=["NR"], seeds=1,
                 scsdc={"sparse_width": 40, "dense_widths": [8]})
    with pytest.raises(ConfigError, match=r"^the ray executor needs Ray: pip install "
                                          r"'sparseflow\[ray\]'$"):
        run_study(plan, tmp_path, executor="ray")


def test_unreachable_address_is_a_one_line_config_error() -> None:
    with socket.socket() as sock:  # a loopback port that nothing listens on once closed
        sock.bind(("127.0.0.1", 0))
        address = f"127.0.0.1:{sock.getsockname()[1]}"
    with pytest.raises(ConfigError, match=f"^no Ray cluster answers at {address} "):
        rb.check_reachable(address)
    rb.check_reachable("auto")  # resolved by Ray itself
