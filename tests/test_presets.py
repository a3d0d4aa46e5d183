"""The paper presets: every file is a valid study of the intended design; `reproduce` runs one."""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path

import pytest
import yaml

import sparseflow  # noqa: F401
from sparseflow import presets
from sparseflow.studies import load_spec
from sparseflow.studies.power_check import cell_pairs

from tests.conftest import expanded_preset
from tests.test_cli import _assert_one_line_error, _run
from tests.test_studies_plan import spec_dict


def _stated(path: Path, pattern: str) -> list[int]:
    """Integers the file's header comment states before ``pattern`` (e.g. "1,200 runs")."""
    header = " ".join(line.lstrip("# ") for line in path.read_text().splitlines()
                      if line.startswith("#"))
    return [int(m.replace(",", "")) for m in re.findall(r"(\d[\d,]*) " + pattern, header)]


@pytest.mark.parametrize("scale", presets.SCALES)
@pytest.mark.parametrize("name", presets.PRESETS)
def test_every_preset_expands_to_the_runs_it_states(name: str, scale: str) -> None:
    path = presets.preset_path(name, scale)
    plan = expanded_preset(name, scale)
    counts = plan.counts()
    assert counts["pairs"] == counts["sparse_runs"] > 0
    stated = _stated(path, "runs")
    assert stated and stated[-1] == counts["runs"], (stated, counts)
    n_stated = _stated(path, r"pairs per cell")
    if n_stated:  # "n = 15 pairs per cell": widths × seeds × the axes pooled in a cell
        pooled = len(plan.spec.axes.get("model.hidden_layers", [None]))
        assert n_stated == [len(plan.spec.scsdc.widths()) * len(plan.spec.seed_list()) * pooled]
    if name == "dst_bn":
        _check_dst_bn(plan, scale)
        return
    axes = plan.spec.axes
    assert "optim.name" in axes
    if scale == "full":
        assert plan.spec.scsdc.sparse_width == 3076
        assert plan.spec.scsdc.widths() == [308, 923, 1538, 2153, 2768] or name == "correlation"
        assert axes["data.name"] == ["fashion_mnist", "cifar10", "cifar100"]
        assert axes["model.hidden_layers"] == [1, 2, 4] and axes["optim.lr"] == [0.001, 0.1]
        _check_selection(plan, path)
        return
    spec = plan.spec
    assert spec.base["data"]["name"] == "fashion_mnist"
    # Evenly spaced probe points: one per epoch from 0 to the last (cpu) or 11 (laptop).
    assert spec.base["gradflow"]["points"] == 11
    if scale == "cpu":
        assert spec.base["train"]["epochs"] == 10
    else:
        assert "train_subset" not in spec.base["data"]  # all 60,000 images
        assert spec.base["train"]["early_stopping"]["enabled"]
    if name != "correlation":
        # The paper's five fractions, ≥ 5 pairs per cell (Wilcoxon's smallest p is 1/2^n),
        # and a rate per optimizer family for every optimizer (none left at the default).
        fractions = spec.scsdc.dense_fractions
        assert fractions == [0.1, 0.3, 0.5, 0.7, 0.9]
        assert set(spec.linked["optim.name"]) == set(axes["optim.name"])
        for run in plan.runs:
            assert run.config["optim"]["lr"] == spec.linked["optim.name"][
                run.cell["optim.name"]]["optim.lr"]


def _check_selection(plan, path: Path) -> None:
    """A preset sweeping the learning rate selects it by validation: every run has a validation
    split, and the header states the selected pairs of each default-table cell."""
    assert plan.spec.select is not None and plan.spec.select.axis == "optim.lr"
    assert plan.spec.select.metric == "val_accuracy"
    assert all(r.config["data"]["val_fraction"] > 0 for r in plan.runs)
    assert plan.counts()["selected_pairs"] * 2 == plan.counts()["pairs"]
    stated = _stated(path, r"selected pairs per cell")
    cells = cell_pairs(plan)
    assert stated and {c.n for c in cells} == set(stated), (stated, {c.n for c in cells})
    # Half the pairs of the same table without the selection: one rate of two per group.
    unselected = cell_pairs(replace(plan, spec=plan.spec.model_copy(update={"select": None})))
    assert [2 * c.n for c in cells] == [c.n for c in unselected]


def _check_dst_bn(plan, scale: str) -> None:
    """The method × (optimizer, BN) design, every method paired with the same dense twins."""
    spec = plan.spec
    assert spec.axes["sparsity.masker"] == ["random", "snip", "synflow", "set", "rigl"]
    assert spec.variants == ["MOM", "MOM_BN", "ADAM", "ADAM_BN"]
    counts = plan.counts()
    assert counts["dense_runs"] * 5 == counts["sparse_runs"]  # one twin for the 5 methods
    assert spec.scsdc.matching == "per_layer"
    if scale == "full":
        assert spec.scsdc.sparse_width == 3076
        assert spec.scsdc.widths() == [308, 923, 1538, 2153, 2768]
    else:
        assert spec.base["data"]["name"] == "fashion_mnist"
        assert len(spec.scsdc.widths()) * len(spec.seed_list()) >= 5


def test_bn_preset_is_the_papers_table() -> None:
    spec = load_spec(presets.preset_path("bn"))
    assert spec.axes["optim.name"] == ["adagrad", "adam", "rmsprop", "sgd", "momentum"]
    assert spec.variants == ["NR", "DA", "L2", "SC", "BN", "DA_BN", "L2_BN", "SC_BN"]


def test_unknown_preset_and_scale(capsys) -> None:
    code, _, err = _run(["reproduce", "bnn"], capsys)
    _assert_one_line_error(code, err, "Did you mean 'bn'?")
    code, _, err = _run(["reproduce", "bn", "--scale", "huge"], capsys)
    _assert_one_line_error(code, err, "--scale must be one of cpu, laptop, full")


def test_reproduce_runs_the_study_and_writes_the_report(tmp_path: Path, monkeypatch,
                                                       capsys) -> None:
    tiny = tmp_path / "tiny.yaml"
    tiny.write_text(yaml.safe_dump(spec_dict(seeds=3, variants=["NR", "BN"],
                                             axes={"optim.name": ["adam"]},
                                             scsdc={"sparse_width": 40,
                                                    "dense_widths": [8, 16]})))
    monkeypatch.setattr(presets, "preset_path", lambda name, scale="cpu": tiny)
    study = tmp_path / "study"
    code, out, err = _run(["reproduce", "bn", "--dir", str(study), "--jobs", "1"], capsys)
    assert code == 0, err
    assert "24 runs finished" in out
    html = study / "report" / "report.html"
    assert html.is_file() and "data:image/png;base64," in html.read_text()


@pytest.mark.parametrize("scale", ["cpu", "laptop", "full"])
@pytest.mark.parametrize("name", ["bn", "ewma", "activations"])
def test_default_table_has_the_papers_layout(name: str, scale: str) -> None:
    # `reproduce` prints the default table: optimizers as rows, as in the paper's tables, and
    # the variants (or, with one variant, the activations) as columns; depths pooled in a cell.
    from sparseflow.analysis.tables import default_axes

    spec = load_spec(presets.preset_path(name, scale))
    # the axis a select tunes is never a default row (as `study tests`)
    axes = [a for a in spec.axes if spec.select is None or a != spec.select.axis] + ["variant"]
    n_values = {**{a: len(v) for a, v in spec.axes.items()}, "variant": len(spec.variants)}
    cols = "model.activation" if name == "activations" else "variant"
    assert default_axes(axes, n_values) == ("optim.name", cols)
