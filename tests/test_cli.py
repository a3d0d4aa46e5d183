"""The command line: training, dry runs, listing, and one-line errors with exit code 2."""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from sparseflow.cli import main

from tests.conftest import tiny


def _run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = 0
    try:
        main(argv)
    except SystemExit as exc:
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def _write(tmp_path: Path, data: dict, name: str = "cfg.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data))
    return path


def test_train_writes_run_and_rerun_is_noop(tmp_path: Path, capsys) -> None:
    cfg = _write(tmp_path, tiny(train={"epochs": 2}, sparsity={"density": 0.5}))
    out_dir = tmp_path / "runs"
    code, out, _ = _run(["train", str(cfg), "--out", str(out_dir), "--seed", "3"], capsys)
    assert code == 0, out
    (run_dir,) = out_dir.iterdir()
    assert run_dir.name.endswith("-s3") and (run_dir / "summary.json").is_file()
    assert "test" in out and "accuracy" in out
    code, out, _ = _run(["train", str(cfg), "--out", str(out_dir), "--seed", "3"], capsys)
    assert code == 0 and "already finished" in out


def test_dry_run_prints_config_id_and_dir(tmp_path: Path, capsys) -> None:
    cfg = _write(tmp_path, tiny())
    code, out, _ = _run(["train", str(cfg), "--dry-run", "--set", "optim.lr=0.2",
                         "--out", str(tmp_path / "r")], capsys)
    assert code == 0
    assert '"lr": 0.2' in out and "id: " in out and "run directory:" in out
    assert not (tmp_path / "r").exists()


def test_list_optimizers(capsys) -> None:
    code, out, _ = _run(["list", "optimizers"], capsys)
    assert code == 0 and "adamw" in out and "rmsprop" in out


def _assert_one_line_error(code: int, err: str, needle: str) -> None:
    assert code == 2
    lines = [ln for ln in err.strip().splitlines() if ln.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("error: ") and needle in lines[0], lines[0]
    assert "Traceback" not in err


@pytest.mark.parametrize("args,needle", [
    (["--set", "optim.name=adamm"], "unknown optimizer 'adamm'"),
    (["--set", "optim.lr=-1"], "optim.lr"),
    (["--set", "sparsity.density=1.5"], "sparsity.density"),
    (["--set", "sparsity.density=0"], "sparsity.density"),
    (["--set", "model.widht=3"], "did you mean 'model.width'"),
])
def test_bad_values_exit_2_one_line(tmp_path: Path, capsys, args: list[str], needle: str) -> None:
    cfg = _write(tmp_path, tiny())
    code, _, err = _run(["train", str(cfg), "--out", str(tmp_path / "runs"), *args], capsys)
    _assert_one_line_error(code, err, needle)
    assert not (tmp_path / "runs").exists()


def test_yaml_syntax_error(tmp_path: Path, capsys) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("optim: {lr: 0.1\n")
    code, _, err = _run(["train", str(bad)], capsys)
    _assert_one_line_error(code, err, "YAML syntax error")


def test_missing_dataset_folder(tmp_path: Path, capsys) -> None:
    cfg = _write(tmp_path, tiny(data={"name": "fashion_mnist", "root": str(tmp_path / "nope")}))
    code, _, err = _run(["train", str(cfg), "--out", str(tmp_path / "runs")], capsys)
    _assert_one_line_error(code, err, "Fashion-MNIST")
    assert not (tmp_path / "runs").exists()


def test_corrupt_idx_file(tmp_path: Path, capsys) -> None:
    root = tmp_path / "fm"
    root.mkdir()
    for stem in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
                 "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"):
        with gzip.open(root / f"{stem}.gz", "wb") as fh:
            fh.write(b"\x00\x00\x08\x03garbage")  # right magic prefix, truncated header
    cfg = _write(tmp_path, tiny(data={"name": "fashion_mnist", "root": str(root)}))
    code, _, err = _run(["train", str(cfg), "--out", str(tmp_path / "runs")], capsys)
    _assert_one_line_error(code, err, "ubyte")
    assert not (tmp_path / "runs").exists()


def test_unknown_list_kind_and_bad_option(capsys) -> None:
    code, _, err = _run(["list", "optimisers"], capsys)
    _assert_one_line_error(code, err, "unknown kind")
    code, _, err = _run(["train", "--nope"], capsys)
    _assert_one_line_error(code, err, "--nope")


def test_console_entry_point_subprocess(tmp_path: Path) -> None:
    """The installed command exits 2 with one line for bad input (no traceback)."""
    proc = subprocess.run([sys.executable, "-m", "sparseflow", "train", "--set",
                           "optim.name=nosuch"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "unknown optimizer" in proc.stderr
    ok = subprocess.run([sys.executable, "-m", "sparseflow", "train", "--dry-run"],
                        capture_output=True, text=True, timeout=120)
    assert ok.returncode == 0 and json.loads(ok.stdout.split("\nid:")[0])["data"]["name"]


def test_version_flag(capsys) -> None:
    import sparseflow

    code, out, err = _run(["--version"], capsys)
    assert code == 0 and err == ""
    assert out == f"sparseflow {sparseflow.__version__}\n"
    proc = subprocess.run([sys.executable, "-m", "sparseflow", "--version"], capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0 and proc.stdout.strip() == f"sparseflow {sparseflow.__version__}"


def test_package_ships_py_typed() -> None:
    """PEP 561: the marker is in the package directory and in the wheel's package data."""
    import tomllib

    import sparseflow

    assert (Path(sparseflow.__file__).parent / "py.typed").is_file()
    pyproject = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())
    assert "py.typed" in pyproject["tool"]["setuptools"]["package-data"]["sparseflow"]
