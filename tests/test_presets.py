"""The paper presets: every file is a valid study of the intended design; `reproduce` runs one."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

import sparseflow  # noqa: F401
from sparseflow import presets
from sparseflow.studies import expand, load_spec

from tests.test_cli import _assert_one_line_error, _run
from tests.test_studies_plan import spec_dict


@pytest.mark.parametrize("scale", presets.SCALES)
@pytest.mark.parametrize("name", presets.PRESETS)
def test_every_preset_expands(name: str, scale: str) -> None:
    plan = expand(load_spec(presets.preset_path(name, scale)))
    counts = plan.counts()
    assert counts["pairs"] == counts["sparse_runs"] > 0
    axes = plan.spec.axes
    if name == "dst_bn":
        _check_dst_bn(plan, scale)
        return
    assert "optim.name" in axes
    if scale == "full":
        assert plan.spec.scsdc.sparse_width == 3076
        assert plan.spec.scsdc.widths() == [308, 923, 1538, 2153, 2768] or name == "correlation"
        assert axes["data.name"] == ["fashion_mnist", "cifar10", "cifar100"]
        assert axes["model.hidden_layers"] == [1, 2, 4] and axes["optim.lr"] == [0.001, 0.1]
    else:
        assert plan.spec.base["data"]["name"] == "fashion_mnist"
        if name != "correlation":  # Wilcoxon needs ≥ 5 pairs per cell
            assert len(plan.spec.scsdc.widths()) * len(plan.spec.seed_list()) >= 5


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
    _assert_one_line_error(code, err, "--scale must be cpu or full")


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
