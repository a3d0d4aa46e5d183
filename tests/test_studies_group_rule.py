"""The measured grouping rule: a study worker batches a fresh group only when its batched step
measures faster than the members' separate steps; either way every run finishes."""

from __future__ import annotations

from pathlib import Path

import pytest

import sparseflow  # noqa: F401
from sparseflow.config import build_config
from sparseflow.data import load_data
from sparseflow.studies import timing, worker
from sparseflow.studies.timing import GROUP_PAYOFF, GroupDecision, group_pays

from tests.conftest import tiny


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
