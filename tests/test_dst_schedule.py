"""The dynamic-sparsity schedule against the rigl reference's own test vectors and
hand-computed values (google-research/rigl, rigl/sparse_optimizers_test.py and
sparse_optimizers_base.py)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from sparseflow.errors import ConfigError
from sparseflow.sparsity.dst import (
    applied_steps,
    drop_count,
    drop_fraction_at,
    end_step_of,
    is_update_step,
)
from sparseflow.sparsity.dst.schedule import check_window, first_last_update


# SparseRigLOptimizerTest.testApplyGradients: (begin, end, frequency, is_incremented), one
# entry per train_op call: 1 = the optimizer stepped (global_step advanced), 0 = a mask update.
@pytest.mark.parametrize("start,end,every,expected", [
    (3, 7, 2, [1, 1, 1, 0, 1, 1, 0, 1, 1, 0, 1]),
    (1, 5, 3, [1, 0, 1, 1, 1, 0, 1, 1, 1, 1, 1]),
    (0, 4, 1, [0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 1]),
])
def test_which_batches_step_matches_the_rigl_vectors(start: int, end: int, every: int,
                                                     expected: list[int]) -> None:
    got = applied_steps(len(expected), start_step=start, end_step=end, update_every=every)
    assert [int(steps) for _, _, steps in got] == expected
    # An update batch is exactly a batch that does not step (skip_update).
    assert all(update != steps for _, update, steps in got)


def test_set_vectors_updates_at_1_and_3() -> None:
    # SparseSETOptimizerTest: begin 1, end 4, frequency 2 → updates at steps 1 and 3; SET steps
    # on every batch (skip_update false).
    got = applied_steps(6, start_step=1, end_step=4, update_every=2, skip_update=False)
    assert [t for t, update, _ in got if update] == [1, 3]
    assert all(steps for _, _, steps in got)
    assert [t for t, _, _ in got] == list(range(6))


def test_first_update_at_start_then_every_delta_t() -> None:
    last = first_last_update(100)
    assert last == -100
    ups = []
    for t in range(0, 801):
        if is_update_step(t, last, start_step=0, end_step=750, update_every=100):
            ups.append(t)
            last = t
    assert ups == [0, 100, 200, 300, 400, 500, 600, 700]
    assert not is_update_step(5, -100, start_step=10, end_step=750, update_every=100)
    assert is_update_step(10, -100, start_step=10, end_step=750, update_every=100)
    assert not is_update_step(751, -100, start_step=0, end_step=750, update_every=100)
    assert is_update_step(750, 650, start_step=0, end_step=750, update_every=100)


def test_end_step_is_the_floor_of_the_fraction() -> None:
    assert end_step_of(0.75, 39) == 29
    assert end_step_of(0.75, 40) == 30
    assert end_step_of(1.0, 17) == 17


def test_start_past_the_end_is_a_config_error() -> None:
    check_window(5, 5)
    with pytest.raises(ConfigError, match="start_step"):
        check_window(6, 5)


@pytest.mark.parametrize("t", [0, 1, 17, 50, 99, 100, 101, 250])
def test_cosine_is_tf_cosine_decay_over_t(t: int) -> None:
    # start 0: d0 · ½(1 + cos(π·min(t, end)/end)).
    want = 0.3 * 0.5 * (1 + math.cos(math.pi * min(t, 100) / 100))
    got = drop_fraction_at(t, drop_fraction=0.3, schedule="cosine", start_step=0, end_step=100)
    assert got == pytest.approx(want, abs=1e-7)


def test_cosine_with_a_later_start_decays_over_t_not_t_minus_start() -> None:
    # The reference passes global_step (not global_step − begin) to cosine_decay with
    # decay_steps = end − begin.
    got = drop_fraction_at(60, drop_fraction=0.3, schedule="cosine", start_step=20, end_step=120)
    assert got == pytest.approx(0.3 * 0.5 * (1 + math.cos(math.pi * 60 / 100)), abs=1e-7)
    assert drop_fraction_at(100, drop_fraction=0.3, schedule="cosine", start_step=20,
                            end_step=120) == pytest.approx(0.0, abs=1e-7)


def test_linear_and_constant() -> None:
    kw = {"drop_fraction": 0.3, "start_step": 20, "end_step": 120}
    assert drop_fraction_at(70, schedule="linear", **kw) == pytest.approx(0.15, abs=1e-7)
    assert drop_fraction_at(20, schedule="linear", **kw) == pytest.approx(0.3, abs=1e-7)
    assert drop_fraction_at(120, schedule="linear", **kw) == pytest.approx(0.0, abs=1e-7)
    assert drop_fraction_at(500, schedule="linear", **kw) == 0.0
    for t in (0, 50, 120, 999):
        assert drop_fraction_at(t, schedule="constant", **kw) == pytest.approx(0.3, abs=1e-7)
    # A window of one step: the full fraction.
    assert drop_fraction_at(5, drop_fraction=0.3, schedule="cosine", start_step=5,
                            end_step=5) == pytest.approx(0.3, abs=1e-7)


def test_drop_count_is_the_float32_truncation() -> None:
    rng = np.random.default_rng(0)
    for _ in range(500):
        n = int(rng.integers(0, 5000))
        f = float(rng.uniform(0, 1))
        assert drop_count(n, f) == int(np.float32(n) * np.float32(f))
    assert drop_count(10, 0.3) == 3
    assert drop_count(7, 0.5) == 3
    assert drop_count(100, 0.0) == 0
    assert drop_count(0, 0.3) == 0
