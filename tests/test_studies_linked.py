"""``linked``: overrides that follow an axis value (e.g. a learning rate per optimizer)."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from sparseflow.studies import expand
from sparseflow.studies.spec import StudySpec

from tests.test_studies_plan import spec_dict

LR = {"optim.name": {"sgd": {"optim.lr": 0.05}, "adam": {"optim.lr": 0.002}}}


def test_each_value_brings_its_overrides_to_both_sides() -> None:
    plan = expand(StudySpec.model_validate(spec_dict(linked=LR)))
    want = {"sgd": 0.05, "adam": 0.002}
    assert len(plan.runs) == 32
    for run in plan.runs:
        assert run.config["optim"]["lr"] == want[run.cell["optim.name"]]
        assert "optim.lr" not in run.cell  # the cell is named by the axis value alone


def test_no_links_leave_every_run_key_as_before() -> None:
    plain = expand(StudySpec.model_validate(spec_dict()))
    empty = expand(StudySpec.model_validate(spec_dict(linked={})))
    assert [r.run_key for r in plain.runs] == [r.run_key for r in empty.runs]


def test_a_value_without_a_link_keeps_the_base() -> None:
    plan = expand(StudySpec.model_validate(spec_dict(
        linked={"optim.name": {"sgd": {"optim.lr": 0.05}}})))
    base_lr = StudySpec.model_validate(spec_dict()).base.get("optim", {}).get("lr")
    lrs = {r.cell["optim.name"]: r.config["optim"]["lr"] for r in plan.runs}
    assert lrs["sgd"] == 0.05 and lrs["adam"] != 0.05
    assert base_lr is None or lrs["adam"] == base_lr


def test_numeric_axis_values_match_yaml_keys() -> None:
    plan = expand(StudySpec.model_validate(spec_dict(
        axes={"model.hidden_layers": [1, 2]},
        linked={"model.hidden_layers": {1: {"optim.lr": 0.01}, 2: {"optim.lr": 0.003}}})))
    for run in plan.runs:
        assert run.config["optim"]["lr"] == {1: 0.01, 2: 0.003}[run.cell["model.hidden_layers"]]


def test_links_of_a_sparse_only_axis_keep_the_twins_shared() -> None:
    spec = spec_dict(axes={"sparsity.masker": ["random", "rigl"]}, variants=["NR"],
                     linked={"sparsity.masker": {"rigl": {"sparsity.dst.update_every": 7}}})
    plan = expand(StudySpec.model_validate(spec))
    counts = plan.counts()
    assert counts["dense_runs"] * 2 == counts["sparse_runs"]
    for run in plan.runs:
        every = run.config["sparsity"]["dst"]["update_every"]
        assert (every == 7) == (run.kind == "sparse" and run.cell["sparsity.masker"] == "rigl")


@pytest.mark.parametrize(("linked", "needle"), [
    ({"optim.lr": {"0.1": {"train.epochs": 3}}}, "is not an axis"),
    ({"optim.name": {"rmsprop": {"optim.lr": 0.1}}}, "is not a value of axis"),
    ({"optim.name": {"sgd": {"optim.name": "adam"}}}, "which is an axis"),
    ({"sparsity.masker": {"rigl": {"optim.lr": 0.1}}}, "changes only the sparse runs"),
])
def test_bad_links_are_refused(linked: dict, needle: str) -> None:
    axes = {"optim.name": ["adam", "sgd"], "sparsity.masker": ["random", "rigl"]}
    with pytest.raises(ValidationError, match=needle):
        StudySpec.model_validate(spec_dict(axes=axes, linked=linked))


def test_a_variant_setting_a_linked_key_is_refused() -> None:
    from sparseflow.errors import ConfigError

    spec = spec_dict(variants=["NR", "FAST"], variant_defs={"FAST": {"optim.lr": 0.5}},
                     linked=LR)
    with pytest.raises(ConfigError, match="which linked also sets"):
        expand(StudySpec.model_validate(spec))
