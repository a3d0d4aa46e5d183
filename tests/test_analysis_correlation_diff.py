"""|τ_a| − |τ_b| with a paired bootstrap over runs; scipy and a hand-written bootstrap: oracles."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from sparseflow.analysis.correlation_diff import (
    PAPER_COMPARISONS,
    differences_markdown,
    null_tau_se,
    tau_difference,
    tau_differences,
)


def _runs(n: int = 120, seed: int = 0, kind: str = "sparse") -> list[dict]:
    """A target and two noisy measures of it: egf2 close (τ ≈ 0.6), gf1 loose (τ ≈ 0.3)."""
    rng = np.random.default_rng(seed)
    loss = rng.normal(size=n)
    egf2 = loss + 0.5 * rng.normal(size=n)
    gf1 = loss + 2.0 * rng.normal(size=n)
    return [{"kind": kind, "test_loss": float(y), "egf2": float(a), "gf1": float(b)}
            for y, a, b in zip(loss, egf2, gf1, strict=True)]


def _col(runs: list[dict], key: str) -> np.ndarray:
    return np.array([r[key] for r in runs])


def test_point_difference_is_scipys_taus() -> None:
    runs = _runs()
    got = tau_difference(runs, "egf2", "gf1", kind="sparse", target="test_loss")
    y = _col(runs, "test_loss")
    expected = (abs(stats.kendalltau(_col(runs, "egf2"), y).statistic)
                - abs(stats.kendalltau(_col(runs, "gf1"), y).statistic))
    assert got.diff == pytest.approx(expected, abs=1e-12)
    assert got.n == 120 and got.note == ""
    assert got.low < got.diff < got.high


def test_ci_agrees_with_a_hand_written_paired_bootstrap() -> None:
    runs = _runs(n=100, seed=3)
    got = tau_difference(runs, "egf2", "gf1", kind="sparse", target="test_loss")
    a, b, y = _col(runs, "egf2"), _col(runs, "gf1"), _col(runs, "test_loss")
    rng = np.random.default_rng(12345)  # independent draws: agreement is statistical
    boot = []
    for _ in range(3000):
        i = rng.integers(0, len(y), len(y))  # resample runs, keeping their three values together
        boot.append(abs(stats.kendalltau(a[i], y[i]).statistic)
                    - abs(stats.kendalltau(b[i], y[i]).statistic))
    low, high = np.percentile(boot, [2.5, 97.5])
    # The CI half-width is ≈ 0.1 here; BCa vs percentile and Monte Carlo error are ≪ that.
    assert got.low == pytest.approx(low, abs=0.03)
    assert got.high == pytest.approx(high, abs=0.03)
    assert got.excludes_zero()


def test_identical_measures_differ_by_exactly_zero() -> None:
    runs = [{**r, "gf1": r["egf2"]} for r in _runs(n=40)]
    got = tau_difference(runs, "egf2", "gf1", kind="sparse", target="test_loss")
    assert (got.diff, got.low, got.high) == (0.0, 0.0, 0.0)
    assert not got.excludes_zero()


def test_noise_measures_give_a_ci_that_covers_zero() -> None:
    rng = np.random.default_rng(7)
    runs = [{"kind": "dense", "test_accuracy": float(rng.normal()), "egf1": float(rng.normal()),
             "gf2": float(rng.normal())} for _ in range(80)]
    got = tau_difference(runs, "egf1", "gf2", kind="dense", target="test_accuracy")
    assert got.low < 0 < got.high and not got.excludes_zero()


def test_kind_filter_missing_values_and_too_few_runs() -> None:
    runs = _runs(n=30) + _runs(n=10, kind="dense")
    runs[0] = {**runs[0], "egf2": None}
    runs[1] = {**runs[1], "test_loss": float("nan")}  # a NaN loss is a diverged run: kept, worst
    got = tau_difference(runs, "egf2", "gf1", kind="sparse", target="test_loss")
    assert got.n == 29
    few = tau_difference(runs[:2], "egf2", "gf1", kind="sparse", target="test_loss")
    assert few.n == 1 and math.isnan(few.diff) and "< 3 runs" in few.note


def test_same_seed_same_interval() -> None:
    runs = _runs(n=60)
    one = tau_difference(runs, "egf2", "gf1", kind="sparse", target="test_loss", seed=5)
    two = tau_difference(runs, "egf2", "gf1", kind="sparse", target="test_loss", seed=5)
    assert one == two


def test_null_se_matches_the_formula_and_simulation() -> None:
    assert null_tau_se(144) == pytest.approx(math.sqrt(2 * 293 / (9 * 144 * 143)))
    assert null_tau_se(144) == pytest.approx(0.0562, abs=1e-4)
    rng = np.random.default_rng(0)
    taus = [stats.kendalltau(rng.normal(size=50), rng.normal(size=50)).statistic
            for _ in range(2000)]
    assert float(np.std(taus)) == pytest.approx(null_tau_se(50), rel=0.08)


def test_markdown_layout_and_bold() -> None:
    runs = [{**r, "egf1": r["egf2"], "gf2": r["gf1"], "test_accuracy": -r["test_loss"]}
            for r in _runs(n=60)]
    diffs = tau_differences(runs, kinds=("sparse",), n_resamples=500)
    assert [(d.a, d.b) for d in diffs[::2]] == list(PAPER_COMPARISONS)
    text = differences_markdown(diffs)
    lines = text.splitlines()
    assert lines[0] == "| |τ| difference | Sparse: loss | Sparse: acc |"
    assert lines[2].startswith("| EGF₁ − ‖g‖₁ | **+")  # egf1 is the close measure: CI above 0
    assert len(lines) == 2 + len(PAPER_COMPARISONS)
