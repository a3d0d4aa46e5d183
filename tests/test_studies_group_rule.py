"""The measured grouping rule: a study worker batches a fresh group only when its batched step
measures faster than the members' separate steps; either way every run finishes."""

from __future__ import annotations

from pathlib import Path

import pytest

import sparseflow  # noqa: F401
from sparseflow.config import build_config
from sparseflow.data import load_data
from sparseflow.store import StudyStore
from sparseflow.studies import batching, expand, run_study, timing, worker
from sparseflow.studies.spec import StudySpec
from sparseflow.studies.timing import GROUP_PAYOFF, GroupDecision, group_pays
from sparseflow.utils.atomic import create_json_once, read_json

from tests.conftest import tiny
from tests.test_studies_plan import spec_dict


def _items(n: int = 2) -> list[tuple[str, dict]]:
    cfgs = [build_config({**tiny(), "seed": s}) for s in range(n)]
    return [(f"run{s}", c.model_dump(mode="json")) for s, c in enumerate(cfgs)]


def test_group_pays_measures_both_ways_and_decides_by_the_ratio() -> None:
    cfgs = [build_config({**tiny(), "seed": s}) for s in range(3)]
    d = group_pays(cfgs, load_data(cfgs[0].data))
    assert d.k == 3 and d.single_step_s > 0 and d.group_step_s > 0
    assert d.ratio == pytest.approx(d.group_step_s / (3 * d.single_step_s))
    assert d.batched == (d.ratio < GROUP_PAYOFF)


@pytest.mark.parametrize("batched", [True, False])
def test_a_worker_follows_the_measurement(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                          batched: bool) -> None:
    monkeypatch.setattr(timing, "group_pays",
                        lambda cfgs, data: GroupDecision(batched, 1.0, 1.0, len(cfgs)))
    outs = worker.execute_group(_items(), str(tmp_path))
    assert all(o.ok for o in outs) and len(outs) == 2
    assert all(("vectorized_group" in o.summary) == batched for o in outs)
    assert all(len(o.metrics) == 3 for o in outs)  # every epoch of every run recorded


def test_a_group_with_a_finished_member_stays_a_group(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    items = _items()
    first = worker.execute(*items[0], str(tmp_path))  # finished alone, before the group
    assert first.ok
    monkeypatch.setattr(timing, "group_pays", lambda cfgs, data: pytest.fail("measured"))
    outs = worker.execute_group(items, str(tmp_path))
    assert [o.ok for o in outs] == [True, True]


def test_a_group_shape_is_measured_once_and_its_record_steers_later_groups(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []

    def measured(cfgs, data):
        calls.append(len(cfgs))
        return GroupDecision(False, 1.0, 1.0, len(cfgs))

    monkeypatch.setattr(timing, "group_pays", measured)
    items = _items(4)
    first = worker.execute_group(items[:2], str(tmp_path))
    later = worker.execute_group(items[2:], str(tmp_path))  # same shape, same size: no timing
    assert calls == [2]
    assert all(o.ok and "vectorized_group" not in o.summary for o in first + later)
    records = list((tmp_path / batching.BATCHING_DIR).glob("*.json"))
    assert len(records) == 1
    assert read_json(records[0]) == {"batched": False, "how": batching.MEASURED}


def test_the_first_record_wins_over_a_concurrent_measurement(tmp_path: Path) -> None:
    cfgs = [build_config({**tiny(), "seed": s}) for s in range(2)]
    path = batching.decision_path(tmp_path, cfgs)

    def measure_while_another_worker_records() -> bool:
        assert create_json_once(path, {"batched": False, "how": batching.MEASURED})
        return True

    assert batching.decide(tmp_path, cfgs, measure_while_another_worker_records) is False
    assert batching.decide(tmp_path, cfgs, lambda: pytest.fail("measured again")) is False
    assert not create_json_once(path, {"batched": True})  # exists: left as it was
    assert read_json(path)["batched"] is False
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temporary file left


def test_the_record_is_per_member_count(tmp_path: Path) -> None:
    two = [build_config({**tiny(), "seed": s}) for s in range(2)]
    three = [build_config({**tiny(), "seed": s}) for s in range(3)]
    other = [build_config({**tiny(), "seed": s, "model": {"width": 24}}) for s in range(2)]
    paths = {batching.decision_path(tmp_path, c) for c in (two, three, other)}
    assert len(paths) == 3
    assert batching.decision_path(tmp_path, two) == batching.decision_path(tmp_path, two[::-1])


def test_vectorize_on_batches_without_measuring_and_auto_then_measures(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    spec = StudySpec.model_validate(spec_dict(axes={"optim.name": ["adam"]}, variants=["NR"],
                                              scsdc={"sparse_width": 16, "dense_widths": [8]}))
    plan = expand(spec)
    monkeypatch.setattr(timing, "group_pays", lambda cfgs, data: pytest.fail("measured"))
    out = run_study(plan, tmp_path, jobs=1, vectorize="on")
    assert out.finished == 4 and out.groups == 2  # sparse and dense: 2 seeds each
    with StudyStore(tmp_path, create=False) as store:
        assert all(r.summary.get("vectorized_group") for r in store.runs())
    folder = tmp_path / "runs" / batching.BATCHING_DIR
    assert {read_json(p)["how"] for p in folder.glob("*.json")} == {batching.FORCED}
    batching.drop_forced(tmp_path / "runs")  # what `--vectorize auto` does first
    assert not list(folder.glob("*.json"))
