"""The store survives SIGKILL at any moment; the study lock dies with its holder."""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from sparseflow.store import StudyBusyError, StudyLock, StudyStore

pytestmark = pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL")

RUNS, EPOCHS, POINTS = 30, 25, 6

# Records every run, then records them all again (new tag), and so on until killed; after each
# commit it logs "<pass> <run_key>". Re-recording exercises the replacement of old rows.
WRITER = textwrap.dedent(f"""
    import sys
    from sparseflow.store import PlannedRun, StudyStore

    RUNS, EPOCHS, POINTS = {RUNS}, {EPOCHS}, {POINTS}
    store = StudyStore(sys.argv[1])
    store.init_study("kill", {{}}, "fp")
    store.add_planned([PlannedRun(f"c{{i}}-s0", f"c{{i}}", 0, "sparse", 8, 16,
                                  {{"variant": "v"}}, {{}}) for i in range(RUNS)])
    layers = {{f"fc{{k}}": {{"norm1": 1.0, "norm2": 0.5, "active": 10, "total": 40}}
              for k in range(4)}}
    with open(sys.argv[2], "a") as log:
        log.write("ready\\n")
        log.flush()
        tag = 0
        while True:
            for i in range(RUNS):
                key = f"c{{i}}-s0"
                if tag == 0:
                    store.mark_running(key)
                summary = {{"run_id": f"c{{i}}", "tag": tag, "duration_s": 1.0, "egf2": 0.5}}
                metrics = [{{"epoch": e + 1, "train_loss": 1.0 / (e + 1), "tag": tag}}
                           for e in range(EPOCHS)]
                flow = [{{"epoch": p, "step": p, "egf2": 0.1 * p, "tag": tag,
                          "per_layer": layers}} for p in range(POINTS)]
                store.record_finished(key, summary, metrics, flow)
                log.write(f"{{tag}} {{key}}\\n")
                log.flush()
            tag += 1
""")


def _lines(path: Path) -> list[str]:
    """Complete lines only: a kill may cut the last one short."""
    text = path.read_text() if path.exists() else ""
    return text.split("\n")[:-1]


def _check_after_kill(study: Path, logged: list[str], why: str) -> None:
    with sqlite3.connect(study / "study.sqlite") as raw:
        assert raw.execute("PRAGMA integrity_check").fetchone()[0] == "ok", why
        assert raw.execute("PRAGMA foreign_key_check").fetchall() == [], why
    raw.close()
    last_tag: dict[str, int] = {}
    for line in logged[1:]:
        tag, key = line.split()
        last_tag[key] = int(tag)
    assert last_tag, f"the writer recorded nothing before the kill ({why})"
    with StudyStore(study, create=False) as store:
        conn = store._connection()
        for run in store.runs():
            rows = conn.execute("SELECT COUNT(*) FROM metrics WHERE run_key = ?",
                                (run.run_key,)).fetchone()[0]
            points = conn.execute("SELECT COUNT(*) FROM gradflow WHERE run_key = ?",
                                  (run.run_key,)).fetchone()[0]
            if run.run_key in last_tag:  # committed before the kill: recorded, exactly once
                assert run.status == "finished", (run.run_key, why)
                # the record in flight at the kill may have committed without being logged
                assert run.summary["tag"] in (last_tag[run.run_key],
                                              last_tag[run.run_key] + 1), why
            if run.status != "finished":
                assert (rows, points) == (0, 0), (run.run_key, why)
                continue
            assert (rows, points) == (EPOCHS, POINTS), (run.run_key, why)
            tags = {m["tag"] for m in store.metrics(run.run_key)}
            tags |= {p["tag"] for p in store.gradflow(run.run_key)}
            assert tags == {run.summary["tag"]}, (run.run_key, why)  # never a mix of two
        unlogged = [r.run_key for r in store.runs("finished") if r.run_key not in last_tag]
        assert len(unlogged) <= 1, why  # only the record in flight at the kill
        store.reset_stale()
        assert store.counts()["running"] == 0


def test_sigkill_while_recording_loses_and_duplicates_nothing(tmp_path: Path) -> None:
    seed = random.randrange(2**32)
    rng = random.Random(seed)
    script = tmp_path / "writer.py"
    script.write_text(WRITER)
    # Three writers at once (each killed at its own random moment) cost one interpreter start.
    trials = []
    for n in range(3):
        study, log = tmp_path / f"study{n}", tmp_path / f"log{n}"
        proc = subprocess.Popen([sys.executable, str(script), str(study), str(log)],
                                stderr=subprocess.PIPE)
        trials.append((proc, study, log, rng.uniform(0.0, 0.5)))
    try:
        for proc, _, log, delay in trials:
            deadline = time.monotonic() + 60
            # "ready" and a first record: the kill lands at a random moment while recording
            while len(_lines(log)) < 2 and proc.poll() is None and time.monotonic() < deadline:
                time.sleep(0.005)
            assert len(_lines(log)) >= 2, \
                proc.stderr.read().decode() if proc.poll() is not None else ""
            time.sleep(delay)
            proc.send_signal(signal.SIGKILL)
    finally:
        for proc, *_ in trials:
            proc.kill()
            proc.wait(timeout=30)
            proc.stderr.close()
    for n, (proc, study, log, delay) in enumerate(trials):
        assert proc.returncode == -signal.SIGKILL, proc.returncode
        _check_after_kill(study, _lines(log), f"seed {seed}, writer {n}, delay {delay:.3f}s")


HOLDER = textwrap.dedent("""
    import sys, time
    from sparseflow.store import StudyLock
    StudyLock(sys.argv[1]).acquire()
    print("locked", flush=True)
    time.sleep(120)
""")


def test_lock_is_exclusive_and_dies_with_a_killed_holder(tmp_path: Path) -> None:
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(tmp_path)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "locked", proc.stderr.read()
        with pytest.raises(StudyBusyError) as exc:
            StudyLock(tmp_path).acquire()
        msg = str(exc.value)
        assert f"(pid {proc.pid})" in msg and str(tmp_path) in msg and "\n" not in msg
        assert "another `sparseflow study run` is active" in msg
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        proc.kill()
        proc.wait(timeout=30)
        proc.stdout.close()
        proc.stderr.close()
    with StudyLock(tmp_path) as lock:  # the kernel released it with the dead holder
        assert lock.held
        assert (tmp_path / ".lock").read_text().strip() == str(os.getpid())


def test_lock_in_one_process_excludes_a_second_and_is_reusable(tmp_path: Path) -> None:
    with StudyLock(tmp_path), pytest.raises(StudyBusyError, match=f"pid {os.getpid()}"):
        StudyLock(tmp_path).acquire()
    with StudyLock(tmp_path) as again:
        assert again.held
    assert not again.held and (tmp_path / ".lock").read_text() == ""
