"""Bad input of every kind answers with one ``error:`` line and exit code 2, before any work:
OS errors on output locations, unreadable / non-UTF-8 / duplicate-key / alias-bomb configs,
non-finite numbers, booleans as numbers, sizes that cannot fit, meaningless densities."""

from __future__ import annotations

import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from sparseflow.config import load_config
from sparseflow.config.yaml_load import MAX_NODES, load_yaml_text
from sparseflow.errors import ConfigError, OutputError, check_output_dir
from sparseflow.models.build import available_memory, check_fits, meta_model, parameter_count

from tests.conftest import tiny
from tests.test_cli import _run as run_cli
from tests.test_studies_plan import spec_dict

SRC = str(Path(__file__).resolve().parents[1] / "src")


def _run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code, _, err = run_cli(argv, capsys)
    return code, err


def _one_error(code: int, err: str, *needles: str) -> None:
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert "Traceback" not in err
    for n in needles:
        assert n in lines[0], (n, lines[0])


def _write(tmp_path: Path, data: dict, name: str = "cfg.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data))
    return path


# --- #1 output locations and OS errors ------------------------------------------------------

def test_train_out_is_a_file(tmp_path: Path, capsys) -> None:
    cfg = _write(tmp_path, tiny(train={"epochs": 1}))
    f = tmp_path / "F"
    f.write_text("x")
    for out, needle in ((f, "is a file"), (f / "sub", "is inside")):
        code, err = _run(["train", str(cfg), "--out", str(out), "-q"], capsys)
        _one_error(code, err, "--out", str(out), needle)
    assert f.read_text() == "x"


def test_study_run_dir_is_a_file(tmp_path: Path, capsys) -> None:
    spec = _write(tmp_path, spec_dict(seeds=1), "s.yaml")
    f = tmp_path / "F"
    f.write_text("x")
    code, err = _run(["study", "run", str(spec), "--dir", str(f / "study")], capsys)
    _one_error(code, err, "--dir", "is inside", "a file")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["F", "s.yaml"]


def test_check_output_dir_accepts_new_and_existing_and_leaves_nothing(tmp_path: Path) -> None:
    check_output_dir(tmp_path / "new" / "deeper", "--out")
    check_output_dir(tmp_path, "--out")
    assert list(tmp_path.iterdir()) == []


def test_os_error_at_the_boundary_is_one_line(tmp_path: Path, capsys) -> None:
    # export onto an existing directory: the store's own write raises the OSError.
    from sparseflow.store import StudyStore

    study = tmp_path / "study"
    with StudyStore(study, create=True):
        pass
    target = tmp_path / "taken"
    (target / "inner").mkdir(parents=True)
    code, err = _run(["study", "export", str(study), "--out", str(target)], capsys)
    _one_error(code, err, str(target))


def _unshare_ro() -> bool:
    if shutil.which("unshare") is None:
        return False
    probe = subprocess.run(["unshare", "-rm", "sh", "-c", "mount -t tmpfs -o ro tmpfs /mnt"],
                           capture_output=True, timeout=30)
    return probe.returncode == 0


@pytest.mark.skipif(not _unshare_ro(), reason="needs unshare and a read-only tmpfs mount")
def test_read_only_file_system_for_real(tmp_path: Path) -> None:
    """A real read-only mount (private mount namespace), where even root cannot write."""
    ro = tmp_path / "ro"
    ro.mkdir()
    cfg = _write(tmp_path, tiny(train={"epochs": 1}))
    spec = _write(tmp_path, spec_dict(seeds=1), "s.yaml")
    py = sys.executable
    script = (f"mount -t tmpfs -o ro tmpfs {ro} && "
              f"{py} -m sparseflow train {cfg} --out {ro}/runs -q; echo rc=$?; "
              f"{py} -m sparseflow study run {spec} --dir {ro}/study; echo rc=$?")
    env = {**os.environ, "PYTHONPATH": SRC}
    res = subprocess.run(["unshare", "-rm", "sh", "-c", script], capture_output=True,
                         text=True, timeout=300, env=env)
    assert res.stdout.count("rc=2") == 2, (res.stdout, res.stderr)
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 2 and all("Read-only file system" in ln for ln in lines), res.stderr
    assert "--out" in lines[0] and "--dir" in lines[1]


# --- #2, #5, #21, #22 config files ----------------------------------------------------------

@pytest.mark.parametrize(("content", "needle"), [
    (bytes(range(128, 256)) * 3, "not UTF-8"),
    ("optim:\n  lr: 0.1\n".encode("utf-16"), "UTF-16"),
])
def test_config_not_utf8(tmp_path: Path, capsys, content: bytes, needle: str) -> None:
    path = tmp_path / "c.yaml"
    path.write_bytes(content)
    for argv in (["train", str(path), "--dry-run"], ["study", "plan", str(path)]):
        code, err = _run(argv, capsys)
        _one_error(code, err, needle, str(path))


def test_utf8_with_bom_is_read(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_bytes(b"\xef\xbb\xbfoptim:\n  lr: 0.25\n")
    assert load_config(path).optim.lr == 0.25


def test_config_is_a_directory(tmp_path: Path, capsys) -> None:
    code, err = _run(["train", str(tmp_path), "--dry-run"], capsys)
    _one_error(code, err, "is a directory")


def test_unreadable_config_is_one_line(tmp_path: Path, capsys) -> None:
    # /proc/self/mem exists and is a file but reading it from offset 0 fails (EIO), a real
    # I/O error that root cannot bypass.
    mem = Path("/proc/self/mem")
    if not mem.is_file():
        pytest.skip("no /proc/self/mem")
    code, err = _run(["train", str(mem), "--dry-run"], capsys)
    _one_error(code, err, "cannot read config file", str(mem))


def test_duplicate_keys_are_refused_with_line(tmp_path: Path, capsys) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("optim:\n  lr: 0.1\n  name: sgd\n  lr: 0.2\n")
    code, err = _run(["train", str(path), "--dry-run"], capsys)
    _one_error(code, err, "duplicate YAML key 'lr' at line 4 (first at line 2)")
    # A key beside a merge key overrides the merged one: legal, kept.
    assert load_yaml_text("a: &a {x: 1, y: 2}\nb:\n  <<: *a\n  x: 3\n")["b"] == {"x": 3, "y": 2}


def _bomb(levels: int) -> str:
    lines = ['l0: &l0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for i in range(1, levels):
        lines.append(f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 10)}]")
    return "\n".join(lines) + "\n"


def test_alias_bomb_is_refused_quickly_and_not_echoed(tmp_path: Path, capsys) -> None:
    path = tmp_path / "bomb.yaml"
    path.write_text(_bomb(9))  # 10^9 leaves once expanded
    for argv in (["train", str(path), "--dry-run"], ["study", "plan", str(path)]):
        code, err = _run(argv, capsys)
        _one_error(code, err, "alias", f"{MAX_NODES:,}")
        assert "lol" not in err and len(err) < 400
    # Small honest aliases are fine: 3 levels = 1,111 nodes.
    assert len(load_yaml_text(_bomb(3))["l2"]) == 10


def test_recursive_alias_is_refused() -> None:
    with pytest.raises(ConfigError, match="itself"):
        load_yaml_text("a: &a [1, *a]\n")


# --- #3 non-finite numbers, #21 booleans ----------------------------------------------------

@pytest.mark.parametrize("override", ["optim.lr=inf", "optim.lr=.inf", "optim.eps=inf",
                                      "regularization.l2=inf", "optim.lr=nan",
                                      "optim.betas=[0.9, .nan]",
                                      "sparsity.layer_densities={x: .inf}",
                                      "optim.schedule.warmup_epochs=inf"])
def test_non_finite_numbers_are_refused(override: str) -> None:
    key = override.split("=")[0]
    with pytest.raises(ConfigError, match="finite") as exc:
        load_config(None, [override])
    assert key in str(exc.value)


def test_every_float_field_refuses_inf() -> None:
    """The mechanism is shared: every float leaf of the config refuses inf."""
    from sparseflow.config.reference import rows

    floats = [key for key, typ, _, _ in rows() if typ.startswith("float")]
    assert len(floats) >= 10
    for key in floats:
        with pytest.raises(ConfigError, match="finite"):
            load_config(None, [f"{key}=inf"])


@pytest.mark.parametrize("override", ["model.width=true", "optim.lr=false",
                                      "optim.betas=[0.9, true]", "train.epochs=true"])
def test_booleans_are_not_numbers(override: str) -> None:
    with pytest.raises(ConfigError, match="boolean, not a number"):
        load_config(None, [override])
    assert load_config(None, ["model.batchnorm=true"]).model.batchnorm is True


def test_betas_needs_two_values() -> None:
    with pytest.raises(ConfigError) as exc:
        load_config(None, ["optim.betas=[0.9]"])
    msg = str(exc.value)
    assert msg.startswith("optim.betas needs 2 values") and "β1, β2" in msg
    assert ".1" not in msg.split("got")[0] and "Field required" not in msg


def test_every_problem_is_reported() -> None:
    with pytest.raises(ConfigError) as exc:
        load_config(None, ["optim.lr=-1", "model.width=0"])
    assert "optim.lr" in str(exc.value) and "model.width" in str(exc.value)


# --- #4 sizes, #9 / #21 preflight -----------------------------------------------------------

def test_meta_model_count_matches_hand_count() -> None:
    from sparseflow.config import ModelConfig

    cfg = ModelConfig(width=100_000, hidden_layers=2)
    # mnist1d: 40 inputs, 10 classes; 40·W + W + W·W + W + W·10 + 10 parameters.
    w = 100_000
    assert parameter_count(meta_model(cfg, (40,), 10)) == 40 * w + w + w * w + w + w * 10 + 10
    # 10 float32 values held 4 times: 160 bytes.
    assert check_fits(10, 4, 159, "m") is not None and check_fits(10, 4, 160, "m") is None
    assert check_fits(10**12, 4, None, "m") is None  # memory unknown: no refusal
    avail = available_memory()
    assert avail is None or avail > 0


@pytest.mark.parametrize("cmd", [["train", "--dry-run"], ["train", "-q"],
                                 ["pair", "--sparse-width", "100000", "--dense-width", "8"]])
def test_a_model_that_cannot_fit_is_refused(tmp_path: Path, capsys, cmd: list[str]) -> None:
    if (available_memory() or 0) > 2**40:
        pytest.skip("this machine has more than 1 TiB free")
    cfg = _write(tmp_path, tiny(model={"width": 100_000}))
    code, err = _run([cmd[0], str(cfg), *cmd[1:], *(["--out", str(tmp_path / "runs")]
                                                   if cmd[0] == "train" else [])], capsys)
    _one_error(code, err, "10,005,200,010 parameters", "GiB", "model.width")
    assert not (tmp_path / "runs").exists()


def test_dry_run_refuses_what_the_run_refuses(tmp_path: Path, capsys) -> None:
    cfg = _write(tmp_path, {"data": {"name": "digits", "num_samples": 100},
                            "model": {"name": "wrn", "depth": 5, "width": 16}})
    for extra in (["--dry-run"], ["-q", "--out", str(tmp_path / "runs")]):
        code, err = _run(["train", str(cfg), *extra], capsys)
        # Both problems, in one line.
        _one_error(code, err, "data.num_samples applies only to mnist1d", "model.depth=5")
    assert not (tmp_path / "runs").exists()


def test_density_that_empties_a_layer_is_refused(tmp_path: Path, capsys) -> None:
    cfg = _write(tmp_path, tiny(sparsity={"density": 1e-9}))
    code, err = _run(["train", str(cfg), "--dry-run"], capsys)
    # The smallest layer is the output layer: 32 · 10 = 320 weights, so ≥ 1/320 is needed.
    _one_error(code, err, "sparsity.density=1e-09", "'out.weight' (320 weights)",
               f"{1 / 320:.3g}")
    ok = _write(tmp_path, tiny(sparsity={"density": 1 / 320}), "ok.yaml")
    code, err = _run(["train", str(ok), "--dry-run"], capsys)
    assert code == 0, err
    assert math.isclose(load_config(ok).sparsity.density, 1 / 320)


def test_pair_refuses_width_overrides(capsys) -> None:
    for key in ("model.width=8", "sparsity.dense_width=4"):
        code, err = _run(["pair", "--sparse-width", "16", "--dense-width", "8", "--set", key],
                         capsys)
        _one_error(code, err, "conflicts with --")


def test_check_output_dir_error_type(tmp_path: Path) -> None:
    f = tmp_path / "F"
    f.write_text("")
    with pytest.raises(OutputError, match="a file, not a folder"):
        check_output_dir(f, "--out")
