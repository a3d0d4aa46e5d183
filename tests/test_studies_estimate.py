"""The study time estimate: its arithmetic with an injected probe, the resume path from a
store's durations, and a real probe that leaves no trace (RNG, threads)."""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
import torch

import sparseflow  # noqa: F401
from sparseflow.config import ExperimentConfig
from sparseflow.data import load_data
from sparseflow.store import StudyStore
from sparseflow.studies import estimate as est
from sparseflow.studies import expand, timing
from sparseflow.studies.spec import StudySpec

from tests.test_studies_plan import spec_dict

FAKE = timing.Throughput(build_s=0.1, step_s=0.01, eval_s_per_example=1e-5, probe_s=0.02,
                         final_s_per_example=2e-6, checkpoint_s=0.005, write_s=0.003)


class FakeProbe:
    """Returns a fixed Throughput, or one from ``rate(cfgs)``; counts its calls."""

    def __init__(self, rate=None) -> None:
        self.calls: list[list[ExperimentConfig]] = []
        self.rate = rate

    def __call__(self, cfgs: Sequence[ExperimentConfig], data, scratch) -> timing.Throughput:
        self.calls.append(list(cfgs))
        return self.rate(cfgs) if self.rate else FAKE


def _plan(**over):
    return expand(StudySpec.model_validate(spec_dict(**over)))


def _by_hand(t: timing.Throughput, k: int, n_train: int, n_val: int, n_test: int) -> float:
    """One group of spec_dict's shape: 2 epochs, batch 64, 3 probe points (epochs 0, 1, 2),
    a checkpoint every epoch; validation evaluated after the last epoch, test after both
    (the probe epochs: train.eval_val / eval_test auto)."""
    steps = math.ceil(n_train / 64)
    loop = 2 * (steps * t.step_s + t.checkpoint_s) + (n_val + 2 * n_test) * t.eval_s_per_example
    return (t.build_s + loop + 3 * t.probe_s
            + k * ((n_train + n_val + n_test) * t.final_s_per_example + t.write_s))


@pytest.fixture(scope="module")
def sizes() -> tuple[int, int, int]:
    cfg = ExperimentConfig.model_validate(_plan().runs[0].config)
    data = load_data(cfg.data)
    return len(data.train), len(data.val), len(data.test)


def test_arithmetic_with_a_fake_probe(sizes) -> None:
    plan = _plan()  # 2 optimizers × 2 variants × 2 widths × 2 kinds = 16 configs, 2 seeds
    probe = FakeProbe()
    e = est.estimate_study(plan, jobs=2, startup_s=1.0, driver_s=0.5, probe=probe, cores=2)
    group = _by_hand(FAKE, 2, *sizes)
    assert (e.groups, e.runs, e.shapes, e.workers) == (16, 32, 16, 2)
    assert e.vectorized and e.skipped == 0 and e.from_store == 0
    assert e.compute_s == pytest.approx(16 * group)
    # two workers, 8 equal groups each, after start-up, data loading and one-time set-up
    assert e.wall_s == pytest.approx(0.5 + 1.0 + e.load_s + e.warmup_s + 8 * group)
    assert all(len(cfgs) == 2 for cfgs in probe.calls)  # each group's two seeds together
    assert e.timed == len({tuple(c.model_dump_json() for c in cfgs) for cfgs in probe.calls})


def test_jobs_oversubscription_and_vectorize_off(sizes) -> None:
    plan = _plan()
    one = est.estimate_study(plan, jobs=1, startup_s=1.0, probe=FakeProbe(), cores=2)
    group = _by_hand(FAKE, 2, *sizes)
    assert one.workers == 1  # in the driver: no worker start-up
    assert one.wall_s == pytest.approx(one.load_s + one.warmup_s + 16 * group)
    three = est.estimate_study(plan, jobs=3, startup_s=1.0, probe=FakeProbe(), cores=2)
    # 16 groups on 3 workers: 6, 5, 5; 3 single-thread workers share 2 cores (× 1.5)
    assert three.wall_s == pytest.approx(1.0 + three.load_s + three.warmup_s + 6 * group * 1.5)
    off = est.estimate_study(plan, jobs=2, vectorize="off", startup_s=1.0, probe=FakeProbe(),
                             cores=2)
    assert (off.groups, off.vectorized) == (32, False)
    assert off.compute_s == pytest.approx(32 * _by_hand(FAKE, 1, *sizes))


def test_untimed_shapes_follow_the_measured_factor_ratios(monkeypatch, sizes) -> None:
    """With multiplicative truth (optimizer × variant × size), the shapes the budget leaves
    untimed are predicted exactly from the design's one-factor-at-a-time probes."""
    opt = {"adam": 1.0, "sgd": 0.5, "rmsprop": 0.8}
    var = {False: 1.0, True: 1.6}
    size = {40: 3.0, 8: 1.0, 16: 1.5}

    def truth(cfgs: Sequence[ExperimentConfig]) -> timing.Throughput:
        c = cfgs[0]
        f = opt[c.optim.name] * var[bool(c.model.batchnorm)] * size[c.model.width]
        return timing.Throughput(**{k: v * f for k, v in FAKE.as_dict().items()})

    monkeypatch.setattr(est, "PROBE_BUDGET_S", 0.0)  # the design only
    plan = _plan(axes={"optim.name": list(opt)})
    probe = FakeProbe(truth)
    e = est.estimate_study(plan, jobs=1, probe=probe, cores=1)
    assert e.timed < e.shapes  # some shapes were predicted, not timed
    # spec_dict's sparse runs are 40 wide; dense runs are 8 or 16 wide
    expected = sum(_by_hand(truth([ExperimentConfig.model_validate(g.runs[0].config)]), 2,
                            *sizes)
                   for g in est.group_runs(plan.runs))
    assert e.compute_s == pytest.approx(expected, rel=1e-9)


def _store_with(tmp_path: Path, plan, finished: dict[str, float]) -> Path:
    """A study directory whose store holds ``plan`` and these finished runs' durations."""
    with StudyStore(tmp_path) as store:
        store.init_study(plan.spec.name, plan.spec.model_dump(mode="json"), plan.fingerprint)
        store.add_planned(plan.runs)
        for key, seconds in finished.items():
            store.record_finished(key, {"duration_s": seconds}, [], [])
    return tmp_path


def test_resume_uses_the_stores_durations(tmp_path: Path) -> None:
    plan = _plan()
    seed0 = {r.run_key: 2.0 for r in plan.runs if r.seed == 0}  # one of each config's seeds
    study = _store_with(tmp_path / "study", plan, seed0)
    probe = FakeProbe()
    e = est.estimate_study(plan, jobs=2, study_dir=study, startup_s=1.0, probe=probe, cores=2)
    assert probe.calls == []  # every shape left has finished runs to go by
    assert (e.skipped, e.runs, e.groups, e.from_store) == (16, 16, 16, 16)
    assert e.compute_s == pytest.approx(16 * 2.0)
    assert e.wall_s == pytest.approx(1.0 + e.load_s + 8 * 2.0)
    assert "16 groups from the store's measured durations" in e.how()


def test_resume_times_only_the_new_shapes(tmp_path: Path, sizes) -> None:
    plan = _plan()
    study = _store_with(tmp_path / "study", plan, {r.run_key: 3.0 for r in plan.runs})
    grown = _plan(variants=["NR", "BN", "L2"])  # 4 new configs (L2) × 2 seeds
    probe = FakeProbe()
    e = est.estimate_study(grown, jobs=1, study_dir=study, probe=probe, cores=1)
    assert (e.skipped, e.runs, e.from_store) == (32, 16, 0)
    assert {c.regularization.l2 > 0 for cfgs in probe.calls for c in cfgs} == {True}
    assert e.compute_s == pytest.approx(8 * _by_hand(FAKE, 2, *sizes))
    done = est.estimate_study(plan, jobs=1, study_dir=study, probe=probe, cores=1)
    assert done.runs == 0 and done.wall_s == 0.0


def test_schedule_replays_the_first_free_worker() -> None:
    # plan order: 4, 1, 1, 1 on two workers → worker A: 4; worker B: 1, 1, 1 → wall 4 (+ 0.5)
    assert est.schedule([4, 1, 1, 1], 2, 0.5, cores=2, threads=1) == (4.5, 2)
    assert est.schedule([4, 1, 1, 1], 1, 0.5, cores=2, threads=1) == (7.0, 1)
    assert est.schedule([3], 4, 0.5, cores=2, threads=1) == (3.0, 1)  # one group: no pool
    assert est.schedule([2, 2], 2, 0.0, cores=2, threads=2) == (4.0, 2)  # 4 threads, 2 cores


def test_probe_points_follow_the_runs_schedule() -> None:
    cfg = ExperimentConfig.model_validate({"train": {"epochs": 20}, "gradflow": {"points": 11}})
    assert est.probe_points(cfg) == 11
    off = cfg.model_copy(update={"gradflow": cfg.gradflow.model_copy(update={"enabled": False})})
    assert est.probe_points(off) == 0
    es = ExperimentConfig.model_validate({"train": {"epochs": 30, "early_stopping": {
        "enabled": True}}, "gradflow": {"points": 11}})
    # grid: every epoch to 20, every 2nd to 40 → 0…20 and 22…30 (21 + 5), the cap is on it
    assert est.probe_points(es) == 26


@pytest.mark.parametrize("threads,k", [(2, 1), (2, 2)])
def test_real_probe_leaves_no_trace_and_computes_at_the_runs_threads(monkeypatch, threads: int,
                                                                     k: int) -> None:
    from sparseflow.train import loop as single_loop
    from sparseflow.train.vectorized import loop as group_loop

    seen: list[int] = []
    module = single_loop if k == 1 else group_loop
    original = module.train_epoch

    def spy(*args, **kwargs):
        seen.append(torch.get_num_threads())
        return original(*args, **kwargs)

    monkeypatch.setattr(module, "train_epoch", spy)
    plan = _plan(base={**spec_dict()["base"], "train": {"epochs": 2, "batch_size": 64,
                                                        "threads": threads}})
    cfgs = [ExperimentConfig.model_validate(r.config) for r in plan.runs[:2 * k:2]]
    assert len({c.seed for c in cfgs}) == k
    data = load_data(cfgs[0].data)
    before_threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        rng, py, npy = torch.get_rng_state(), random.getstate(), np.random.get_state()
        t = timing.measure(cfgs, data)
        assert torch.equal(torch.get_rng_state(), rng)
        assert random.getstate() == py
        assert all(np.array_equal(a, b) for a, b in zip(np.random.get_state(), npy,
                                                        strict=True))
        assert torch.get_num_threads() == 1 and torch.is_grad_enabled()
    finally:
        torch.set_num_threads(before_threads)
    assert seen and set(seen) == {threads}  # computed as the run will: at train.threads
    values = t.as_dict()
    assert all(math.isfinite(v) and v >= 0 for v in values.values())
    assert t.step_s > 0 and t.probe_s > 0 and t.build_s > 0


def test_a_budget_spent_after_the_first_probe_gives_untimed_levels_ratio_one() -> None:
    from sparseflow.studies.cost_model import Shape, design, predict

    shapes = [Shape({"opt": o, "size": s}, cost=c)
              for o, s, c in (("a", "big", 3), ("b", "big", 3), ("a", "small", 1))]
    calls: list[int] = []

    def measure(i: int) -> timing.Throughput:
        calls.append(i)
        return FAKE

    measured = design(shapes, ["opt"], "size", measure, lambda i, t: 1.0,
                      lambda extra, seconds: False)
    assert calls == [0] and set(measured) == {0}  # the first probe always runs
    for t in predict(shapes, ["opt", "size"], measured):  # exp(log(x)): equal to rounding
        assert t.as_dict() == pytest.approx(FAKE.as_dict(), rel=1e-12)


def test_a_group_of_big_models_is_timed_with_two_members(monkeypatch, sizes) -> None:
    monkeypatch.setattr(est, "BIG_GROUP", 0)  # every model counts as big
    probe = FakeProbe()
    e = est.estimate_study(_plan(seeds=4), jobs=1, probe=probe, cores=1)
    assert {len(cfgs) for cfgs in probe.calls} == {2}  # groups of 4, timed with 2
    twice = FAKE.for_members(2.0)
    assert (twice.step_s, twice.final_s_per_example) == (2 * FAKE.step_s,
                                                         FAKE.final_s_per_example)
    assert e.compute_s == pytest.approx(16 * _by_hand(twice, 4, *sizes))
