"""Progress output: the live displays fit 80 columns; without a terminal, plain lines."""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import yaml
from rich.cells import cell_len
from rich.console import Console

from sparseflow.cli.progress import ProgressHook
from sparseflow.cli.study_progress import StudyProgress
from sparseflow.store import PlannedRun

from tests.conftest import tiny
from tests.test_studies_plan import spec_dict

LABEL = "sparse 1a2b3c4d5e6f-s0"


def _state(**over: object) -> SimpleNamespace:
    last = {"train_loss": 0.43219, "train_accuracy": 0.875, "val_loss": 0.51,
            "val_accuracy": 0.85}
    values = {"epochs": 1000, "steps_per_epoch": 50, "step": 1234, "epoch": 24, "last": last,
              "extra": {"latest_egf2": 0.0123456, "gradflow": [{"epoch": 24, "egf2": 0.0123456}]}}
    return SimpleNamespace(**{**values, **over})


def _render(progress: object, width: int = 80) -> list[str]:
    """The display's lines as an 80-column terminal shows them."""
    out = Console(width=width, record=True, force_terminal=True, file=io.StringIO())
    out.print(progress.get_renderable())  # type: ignore[attr-defined]
    return [line.rstrip() for line in out.export_text().splitlines() if line.strip()]


def _terminal() -> Console:
    return Console(file=io.StringIO(), force_terminal=True, width=80)


def test_train_display_fits_80_columns() -> None:
    hook = ProgressHook(_terminal(), LABEL)
    assert hook.live
    state = _state()
    hook.begin(state)
    hook.end_epoch(state)
    hook.stop()
    bar, metrics = _render(hook.progress)
    assert all(cell_len(line) <= 80 for line in (bar, metrics))
    assert bar.startswith(LABEL) and "epoch 24/1000" in bar and "2%" in bar
    assert re.search(r"ETA (\d+:\d\d:\d\d|-:--:--)$", bar), bar
    assert metrics.startswith("egf2 0.01235 (epoch 24)") and "val acc 85.00%" in metrics
    assert "…" not in bar + metrics


def test_study_display_fits_80_columns() -> None:
    runs = [PlannedRun("1a2b3c4d5e6f-s3", "1a2b3c4d5e6f", 3, "sparse", 256, 26,
                       {"optim.name": "adam", "variant": "DA_L2_SC_BN"}, {})]
    progress = StudyProgress(_terminal(), "activations-cpu", runs)
    progress.start(36000, 120)
    progress.advance(SimpleNamespace(run_key="1a2b3c4d5e6f-s3", ok=True, error="",
                                     summary={"test_accuracy": 0.912, "egf2": 0.0123456,
                                              "duration_s": 2.5}))
    progress.advance(SimpleNamespace(run_key="x-s0", ok=False, error="[boom] RuntimeError",
                                     summary={}))
    progress.stop()
    bar, latest = _render(progress.progress)
    assert all(cell_len(line) <= 80 for line in (bar, latest))
    assert bar.startswith("activations-cpu") and "122/36000" in bar and "1 failed" in bar
    assert re.search(r"ETA (\d+:\d\d:\d\d|-:--:--)$", bar), bar
    assert latest.startswith("latest: egf2 0.01235  test 91.20%  sparse 1a2b3c4d5e6f-s3")
    assert "[boom] RuntimeError" in progress.console.file.getvalue()  # not taken as markup


def test_plain_study_lines() -> None:
    console = Console(file=io.StringIO(), force_terminal=False, width=80)
    runs = [PlannedRun("k1-s0", "k1", 0, "dense", None, 26, {"variant": "BN"}, {})]
    progress = StudyProgress(console, "demo", runs)
    assert not progress.live
    progress.start(4, 1)
    progress.advance(SimpleNamespace(run_key="k1-s0", ok=True, error="",
                                     summary={"test_accuracy": 0.5, "egf2": 1.5,
                                              "duration_s": 12.25}))
    progress.advance(SimpleNamespace(run_key="k2-s0", ok=False, summary={},
                                     error="Traceback\n  line\nValueError: " + "x" * 300))
    head, done, failed = console.file.getvalue().splitlines()
    assert head == "study demo: 3 of 4 runs to train"
    assert re.fullmatch(r"\[2/4\] finished dense k1-s0 \{variant=BN dense_width=26\}  "
                        r"test acc 50\.00%  egf2 1\.5  12\.2 s  ETA \d:\d\d:\d\d", done), done
    assert failed.startswith("[3/4] FAILED ? k2-s0 {?}  error: Traceback line ValueError: x")
    assert "…  ETA " in failed and len(failed) < 300  # one line, the error cut


def test_plain_train_line_at_the_stop_epoch() -> None:
    """Early stopping probes the stop epoch after its epoch line: one more line says so."""
    console = Console(file=io.StringIO(), force_terminal=False, width=80)
    hook = ProgressHook(console, LABEL)
    state = _state(epochs=100, epoch=7, extra={"gradflow": [{"epoch": 6, "egf2": 0.5}]})
    hook.begin(state)
    hook.end_epoch(state)
    state.extra["gradflow"].append({"epoch": 7, "egf2": 0.25})
    hook.end(state)
    _, epoch, stop = console.file.getvalue().splitlines()
    assert "egf2" not in epoch and stop == "epoch 7/100 egf2 0.25 (probe at the stop epoch)"


def _piped(argv: list[str], cwd: Path) -> str:
    env = {k: v for k, v in os.environ.items() if k not in ("FORCE_COLOR", "TTY_COMPATIBLE")}
    proc = subprocess.run([sys.executable, "-m", "sparseflow", *argv], capture_output=True,
                          text=True, timeout=300, cwd=cwd, env={**env, "COLUMNS": "80"})
    assert proc.returncode == 0, proc.stderr
    assert "\x1b" not in proc.stdout and "\r" not in proc.stdout  # no ANSI, no redraws
    return proc.stdout


def test_train_piped_prints_one_line_per_epoch(tmp_path: Path) -> None:
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(yaml.safe_dump(tiny(train={"epochs": 2}, sparsity={"density": 0.5},
                                       gradflow={"points": 3})))  # epochs 0, 1, 2
    out = _piped(["train", str(cfg), "--out", str(tmp_path / "runs")], tmp_path)
    lines = [ln for ln in out.splitlines() if " epoch " in ln]
    assert len(lines) == 2, out
    # Validation is evaluated after the last epoch only (train.eval_val: auto).
    pattern = (r"sparse [0-9a-f]{{12}}-s0 epoch {i}/2  train loss \d\.\d{{4}} acc \d+\.\d\d%  "
               r"{val}egf2 [0-9.e+-]+  elapsed \d:\d\d:\d\d")
    for i, line in enumerate(lines, 1):
        val = r"val loss \d\.\d{4} acc \d+\.\d\d%  " if i == 2 else ""
        assert re.fullmatch(pattern.format(i=i, val=val), line), line
    assert "ETA" not in out  # no progress bar (the final table is the only drawing)


def test_study_run_piped_prints_one_line_per_run(tmp_path: Path) -> None:
    spec = tmp_path / "s.yaml"
    spec.write_text(yaml.safe_dump(spec_dict(axes={}, variants=["NR"], seeds=2,
                                             scsdc={"sparse_width": 40, "dense_widths": [8]})))
    out = _piped(["study", "run", str(spec), "--dir", str(tmp_path / "study"), "--jobs", "1"],
                 tmp_path)
    lines = [ln for ln in out.splitlines() if ln.startswith("[")]
    assert len(lines) == 4, out
    for i, line in enumerate(lines, 1):
        assert re.fullmatch(rf"\[{i}/4\] finished (sparse|dense) [0-9a-f]{{12}}-s[01] "
                            r"\{variant=NR dense_width=8\}  test acc \d+\.\d\d%  "
                            r"egf2 [0-9.e+-]+  [0-9.e+-]+ s  ETA \d:\d\d:\d\d", line), line
    assert not re.search(r"━.*\d/4", out)  # no progress bar
