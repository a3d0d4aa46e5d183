"""``train.log: tensorboard``: a TensorBoard log per run, which changes neither results nor ids."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from sparseflow.config import build_config, config_id
from sparseflow.gradflow import MEASURES
from sparseflow.studies.grouping import vectorizable
from sparseflow.train import run_experiment

from tests.conftest import tiny

pytest.importorskip("tensorboard", reason="tensorboard is not installed (pip install tensorboard)")
from tensorboard.backend.event_processing.event_accumulator import (  # noqa: E402
    EventAccumulator,
)


def _scalars(log_dir: Path) -> EventAccumulator:
    acc = EventAccumulator(str(log_dir), size_guidance={"scalars": 0})
    acc.Reload()
    return acc


def _values(acc: EventAccumulator, tag: str) -> dict[int, float]:
    return {e.step: e.value for e in acc.Scalars(tag)}


def test_log_does_not_change_run_ids() -> None:
    off = build_config(tiny(sparsity={"density": 0.3}))
    on = build_config(tiny(sparsity={"density": 0.3}, train={"log": "tensorboard"}))
    assert off.train.log == "none"
    assert config_id(on) == config_id(off)
    # A config whose train section differs only by the log keeps the id of one without it.
    assert config_id(build_config(tiny(train={"log": "tensorboard", "epochs": 3}))) == \
        config_id(build_config(tiny()))


def test_bad_log_value_is_refused() -> None:
    from sparseflow.errors import ConfigError

    with pytest.raises((ConfigError, ValueError), match="log"):
        build_config(tiny(train={"log": "wandb"}))


def test_tensorboard_log_holds_epochs_and_gradflow_and_same_weights(tmp_path: Path) -> None:
    sections = {"sparsity": {"density": 0.3}, "gradflow": {"points": 3}}
    plain = run_experiment(build_config(tiny(**sections)), tmp_path / "plain")
    logged = run_experiment(build_config(tiny(**sections, train={"log": "tensorboard"})),
                            tmp_path / "logged")
    assert not (plain.run_dir / "tb").exists()
    a = torch.load(plain.run_dir / "final.pt", weights_only=True)
    b = torch.load(logged.run_dir / "final.pt", weights_only=True)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)

    tb = logged.run_dir / "tb"
    assert list(tb.glob("events.out.tfevents.*"))
    acc = _scalars(tb)
    metrics = json.loads((logged.run_dir / "metrics.json").read_text())
    train_loss = _values(acc, "loss/train")
    assert sorted(train_loss) == [1, 2, 3]
    test_acc = _values(acc, "accuracy/test")
    # The test split is evaluated at the probe epochs after training (2, 3), not after epoch 1;
    # validation after the last epoch only (train.eval_test / eval_val: auto).
    assert sorted(test_acc) == [m["epoch"] for m in metrics if m["test_accuracy"] is not None]
    assert sorted(test_acc) == [2, 3] and sorted(_values(acc, "loss/val")) == [3]
    for m in metrics:
        assert train_loss[m["epoch"]] == pytest.approx(m["train_loss"], rel=1e-6)
        if m["test_accuracy"] is not None:
            assert test_acc[m["epoch"]] == pytest.approx(m["test_accuracy"], rel=1e-6)
    series = json.loads((logged.run_dir / "gradflow.json").read_text())
    series = series["series"] if isinstance(series, dict) else series
    epochs = [p["epoch"] for p in series]
    assert epochs[0] == 0 and len(epochs) >= 2
    for key in MEASURES:
        got = _values(acc, f"gradflow/{key}")
        assert sorted(got) == epochs
        for p in series:
            assert got[p["epoch"]] == pytest.approx(p[key], rel=1e-6, abs=1e-12)
    layer = next(iter(series[0]["per_layer"]))
    norms = _values(acc, f"gradflow_layer/{layer}/norm2")
    assert norms[0] == pytest.approx(series[0]["per_layer"][layer]["norm2"], rel=1e-6)
    assert f"gradflow_layer/{layer}/norm2_raw" in acc.Tags()["scalars"]


def test_log_resumes_without_duplicating_epochs(tmp_path: Path) -> None:
    cfg = build_config(tiny(train={"log": "tensorboard"}, gradflow={"points": 4}))
    part = run_experiment(cfg, tmp_path, until_epoch=2)
    assert part.status == "partial"
    done = run_experiment(cfg, tmp_path)
    assert done.status == "finished"
    acc = _scalars(done.run_dir / "tb")
    assert [e.step for e in acc.Scalars("loss/train")] == [1, 2, 3]
    assert sorted(e.step for e in acc.Scalars("gradflow/egf2")) == [0, 1, 2, 3]


def test_log_of_a_run_started_over_holds_each_epoch_once(tmp_path: Path) -> None:
    cfg = build_config(tiny(train={"log": "tensorboard", "checkpoint_every": 0}))
    assert run_experiment(cfg, tmp_path, until_epoch=2).status == "partial"
    done = run_experiment(cfg, tmp_path)  # no checkpoint: trains again from epoch 0
    acc = _scalars(done.run_dir / "tb")
    assert [e.step for e in acc.Scalars("loss/train")] == [1, 2, 3]
    assert [e.step for e in acc.Scalars("gradflow/egf2")].count(0) == 1


def test_logged_runs_are_not_vectorized() -> None:
    assert vectorizable(build_config(tiny()))
    assert not vectorizable(build_config(tiny(train={"log": "tensorboard"})))


def test_cli_train_set_log_and_bad_value(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    import yaml

    from sparseflow.cli import main

    def cli(argv: list[str]) -> tuple[int, str]:
        try:
            main(argv)
            code = 0
        except SystemExit as exc:
            code = int(exc.code or 0)
        out, err = capsys.readouterr()
        return code, out + err

    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(yaml.safe_dump(tiny(train={"epochs": 1})))
    code, out = cli(["train", str(cfg), "--out", str(tmp_path / "runs"),
                     "--set", "train.log=tensorboard", "-q"])
    assert code == 0, out
    (run_dir,) = (tmp_path / "runs").iterdir()
    assert sorted(_values(_scalars(run_dir / "tb"), "loss/val")) == [1]
    code, out = cli(["train", str(cfg), "--out", str(tmp_path / "bad"),
                     "--set", "train.log=wandb"])
    assert code == 2 and "train.log" in out and "Traceback" not in out


def test_study_workers_write_a_log_per_run(tmp_path: Path) -> None:
    from sparseflow.studies import expand, run_study
    from sparseflow.studies.spec import StudySpec

    from tests.test_studies_plan import spec_dict

    spec = spec_dict(axes={"optim.name": ["sgd"]}, variants=["NR"], seeds=1,
                     scsdc={"sparse_width": 40, "dense_widths": [8]})
    spec["base"] = {**spec["base"], "train": {"epochs": 2, "batch_size": 64,
                                              "log": "tensorboard"}}
    plan = expand(StudySpec.model_validate(spec))
    out = run_study(plan, tmp_path, jobs=1)
    assert out.finished == 2
    for run in plan.runs:
        acc = _scalars(tmp_path / "runs" / run.run_key / "tb")
        assert sorted(_values(acc, "loss/train")) == [1, 2]
        assert sorted(_values(acc, "gradflow/egf2")) == [0, 1, 2]


def test_missing_tensorboard_is_a_config_error(tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    from sparseflow.errors import ConfigError

    monkeypatch.setitem(__import__("sys").modules, "tensorboard", None)
    cfg = build_config(tiny(train={"log": "tensorboard", "epochs": 1}))
    with pytest.raises(ConfigError, match=r"pip install tensorboard.*train\.log: none"):
        run_experiment(cfg, tmp_path / "runs")
    assert not (tmp_path / "runs").exists()  # refused before anything is written
