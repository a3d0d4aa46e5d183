"""Evaluation where it is used: train.eval_val / train.eval_test decide which epochs evaluate
the validation and test splits; the weights, the run id and the final evaluation never change."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import sparseflow  # noqa: F401
from sparseflow.config import build_config, config_id
from sparseflow.errors import ConfigError
from sparseflow.report.data import evaluated_text
from sparseflow.report.series_runs import _kind_series
from sparseflow.studies.estimate import Sizes, eval_examples
from sparseflow.train import run_experiment
from sparseflow.train.evaluation import EvalPlan, resolve_modes
from sparseflow.train.vectorized import run_group

from tests.conftest import tiny

# 4 epochs with 3 probe points: gradient flow at epochs 0, 2, 4.
SECTIONS = {"train": {"epochs": 4}, "gradflow": {"points": 3}, "sparsity": {"density": 0.4}}


def _cfg(seed: int = 0, **train):
    base = tiny(**SECTIONS)
    return build_config({**base, "train": {**base["train"], **train}, "seed": seed})


def _evaluated_epochs(run_dir: Path, key: str) -> list[int]:
    metrics = json.loads((run_dir / "metrics.json").read_text())
    return [m["epoch"] for m in metrics if m[key] is not None]


@pytest.mark.parametrize(("val", "test", "es", "gf", "want"), [
    ("auto", "auto", False, True, ("end", "probes")),
    ("auto", "auto", True, True, ("epoch", "probes")),
    ("auto", "probes", False, False, ("end", "end")),  # no probe epochs without gradient flow
    ("never", "epoch", False, True, ("never", "epoch")),
])
def test_auto_resolves(val: str, test: str, es: bool, gf: bool, want: tuple[str, str]) -> None:
    assert resolve_modes(val, test, early_stopping=es, gradflow=gf) == want


def test_plan_epochs_by_hand() -> None:
    plan = EvalPlan.from_config(_cfg())
    assert plan.epochs_of("val", 4) == [4] and plan.epochs_of("test", 4) == [2, 4]
    every = EvalPlan.from_config(_cfg(eval_val="epoch", eval_test="end"))
    assert every.epochs_of("val", 4) == [1, 2, 3, 4] and every.epochs_of("test", 4) == [4]
    assert EvalPlan.from_config(_cfg(eval_val="never")).passes("val") == 0


def test_eval_fields_are_not_in_the_run_id() -> None:
    ids = {config_id(_cfg(eval_val=v, eval_test=t))
           for v in ("auto", "epoch", "end", "never") for t in ("auto", "probes", "epoch", "end")}
    assert ids == {config_id(_cfg())}


def test_early_stopping_needs_val_every_epoch() -> None:
    es = {"enabled": True, "patience": 2}
    with pytest.raises(ConfigError, match="eval_val=epoch"):
        _cfg(early_stopping=es, eval_val="end")
    assert _cfg(early_stopping=es).train.eval_val == "auto"  # auto: every epoch
    assert EvalPlan.from_config(_cfg(early_stopping=es)).passes("val") == 4


def test_series_holds_what_was_evaluated_and_weights_do_not_change(tmp_path: Path) -> None:
    lean = run_experiment(_cfg(), tmp_path / "lean")
    full = run_experiment(_cfg(eval_val="epoch", eval_test="epoch"), tmp_path / "full")
    assert _evaluated_epochs(lean.run_dir, "val_loss") == [4]
    assert _evaluated_epochs(lean.run_dir, "val_accuracy") == [4]
    assert _evaluated_epochs(lean.run_dir, "test_loss") == [2, 4]
    assert _evaluated_epochs(full.run_dir, "test_accuracy") == [1, 2, 3, 4]
    a = torch.load(lean.run_dir / "final.pt", weights_only=True)
    b = torch.load(full.run_dir / "final.pt", weights_only=True)
    assert all(torch.equal(a[k], b[k]) for k in a)  # same process, same computation
    # What was evaluated agrees with the every-epoch run where both evaluated.
    lm = json.loads((lean.run_dir / "metrics.json").read_text())
    fm = json.loads((full.run_dir / "metrics.json").read_text())
    assert lm[1]["test_loss"] == fm[1]["test_loss"] and lm[3]["val_loss"] == fm[3]["val_loss"]
    # The final evaluation is made whatever the plan says.
    for key in ("train_loss", "val_loss", "test_loss", "test_accuracy"):
        assert lean.summary[key] == full.summary[key]
    assert lean.summary["evaluation"] == {"val": "end", "test": "probes", "val_epochs": [4],
                                          "test_epochs": [2, 4]}


def test_vectorized_group_follows_the_same_plan(tmp_path: Path) -> None:
    cfgs = [_cfg(seed=s, eval_test="end") for s in range(2)]
    grouped = run_group(cfgs, tmp_path / "g")
    alone = run_experiment(cfgs[0], tmp_path / "s")
    for g in grouped:
        assert _evaluated_epochs(g.run_dir, "val_loss") == [4]
        assert _evaluated_epochs(g.run_dir, "test_loss") == [4]
        assert g.summary["evaluation"]["test"] == "end"
    gm = json.loads((grouped[0].run_dir / "metrics.json").read_text())
    am = json.loads((alone.run_dir / "metrics.json").read_text())
    assert gm[-1]["test_loss"] == pytest.approx(am[-1]["test_loss"], rel=1e-4)
    assert gm[0]["val_loss"] is None and am[0]["val_loss"] is None


def test_estimate_counts_the_evaluations_it_makes() -> None:
    sizes = Sizes(n_train=800, n_val=100, n_test=300, load_s=0.0)
    assert eval_examples(_cfg(), sizes) == 1 * 100 + 2 * 300
    assert eval_examples(_cfg(eval_val="epoch", eval_test="epoch"), sizes) == 4 * 400
    assert eval_examples(_cfg(eval_val="never", eval_test="end"), sizes) == 300


def test_curves_skip_epochs_without_an_evaluation() -> None:
    rows = [{"epoch": 1, "test_accuracy": None}, {"epoch": 2, "test_accuracy": 0.5},
            {"epoch": 3, "test_accuracy": None}, {"epoch": 4, "test_accuracy": 0.7}]
    (line,) = _kind_series([("dense", rows)], "test_accuracy", 100.0, False, "x")
    assert line.x == [2.0, 4.0] and line.y == pytest.approx([50.0, 70.0])


def test_report_line_says_what_was_evaluated_when() -> None:
    ev = {"val": "end", "test": "probes", "val_epochs": [4], "test_epochs": [2, 4]}
    text = evaluated_text([{"evaluation": ev}, {"evaluation": ev}])
    assert text.startswith("validation after the last epoch only, test at the probe epochs")
    assert "(1 validation and 2 test evaluations per run)" in text
    old = evaluated_text([{}, {"evaluation": ev}])  # a run recorded before the fields existed
    assert "validation and test after every epoch [1 runs]" in old
    assert evaluated_text([]) == "–"


def test_step_hooks_are_resolved_once_and_called_in_order() -> None:
    from sparseflow.train.hooks import Hook
    from sparseflow.train.loop import _bound

    calls: list[str] = []

    class Plain:  # no base class: its own method only
        def after_step(self, state) -> None:
            calls.append("plain")

    class Sub(Hook):  # inherits Hook's no-ops, overrides one
        def after_step(self, state) -> None:
            calls.append("sub")

    hooks = [Sub(), Hook(), Plain(), object()]
    assert _bound(hooks, "before_step") == []  # only inherited no-ops or nothing
    for fn in _bound(hooks, "after_step"):
        fn(None)
    assert calls == ["sub", "plain"]


def test_final_evaluation_reuses_the_last_epochs_when_weights_are_unchanged(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from sparseflow.train import loop

    calls: list[int] = []
    real = loop.evaluate

    def counting(model, split, batch_size):
        calls.append(len(split))
        return real(model, split, batch_size)

    monkeypatch.setattr(loop, "evaluate", counting)
    result = run_experiment(_cfg(), tmp_path)
    summary = result.summary
    n = summary["dataset"]
    # The series: test after epochs 2 and 4, val after 4; the summary adds only train.
    assert sorted(calls) == sorted([n["test"], n["test"], n["val"], n["train"]])
    last = json.loads((result.run_dir / "metrics.json").read_text())[-1]
    assert (summary["val_loss"], summary["test_accuracy"]) == (last["val_loss"],
                                                                last["test_accuracy"])


def test_restored_best_weights_are_evaluated_again(tmp_path: Path) -> None:
    # lr high enough that validation loss stops improving early on this tiny set.
    cfg = _cfg(epochs=10, early_stopping={"enabled": True, "patience": 1})
    cfg = cfg.model_copy(update={"optim": cfg.optim.model_copy(update={"lr": 0.8})})
    result = run_experiment(cfg, tmp_path)
    metrics = json.loads((result.run_dir / "metrics.json").read_text())
    best = result.summary["best_epoch"]
    assert all(m["val_loss"] is not None for m in metrics)  # early stopping: every epoch
    # The final weights are the best epoch's, so their validation loss is that epoch's.
    assert result.summary["val_loss"] == pytest.approx(metrics[best - 1]["val_loss"], rel=1e-6)
    assert best < len(metrics)  # stopped after a worse epoch: the restore is exercised
    assert result.summary["val_loss"] != metrics[-1]["val_loss"]  # evaluated again
