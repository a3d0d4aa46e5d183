"""One layer's drop-and-grow (hand-computed vectors, random configs), the optimizer-state
reset and the stateless generator."""

from __future__ import annotations

import pytest
import torch
from scipy import stats
from torch import nn

import sparseflow  # noqa: F401
from sparseflow.registry import MASKERS
from sparseflow.sparsity.dst import drop_and_grow, restart_positions, step_generator


def _b(values: list[int]) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.bool)


def test_hand_computed_update() -> None:
    mag = torch.tensor([0.5, 0.1, 0.3, 0.0, 0.2, 0.0, 0.4, 0.0])
    mask = _b([1, 1, 1, 0, 1, 0, 1, 0])
    score = torch.tensor([9.0, 0.0, 0.0, 1.0, 0.0, 3.0, 0.0, 2.0])
    new, dropped, grown = drop_and_grow(mag, mask, score, 2)
    # Drop the 2 active of smallest |w|: 0.1 (index 1) and 0.2 (index 4).
    assert dropped.tolist() == _b([0, 1, 0, 0, 1, 0, 0, 0]).tolist()
    # Grow the 2 best among the inactive after the drop {1, 3, 4, 5, 7}: 5 (3.0) and 7 (2.0).
    assert grown.tolist() == _b([0, 0, 0, 0, 0, 1, 0, 1]).tolist()
    assert new.tolist() == _b([1, 0, 1, 0, 0, 1, 1, 1]).tolist()


def test_a_just_dropped_weight_may_regrow() -> None:
    mag = torch.tensor([0.5, 0.1, 0.3, 0.0])
    mask = _b([1, 1, 1, 0])
    score = torch.tensor([0.0, 5.0, 0.0, 1.0])  # index 1 (just dropped) has the best score
    new, dropped, grown = drop_and_grow(mag, mask, score, 1)
    assert dropped.tolist() == grown.tolist() == _b([0, 1, 0, 0]).tolist()
    assert new.tolist() == mask.tolist()


def test_ties_go_to_the_lower_index() -> None:
    mag = torch.tensor([0.2, 0.2, 0.2, 0.0, 0.0, 0.0])
    mask = _b([1, 1, 1, 0, 0, 0])
    score = torch.tensor([0.0, 0.0, 0.0, 1.0, 1.0, 1.0])
    new, dropped, grown = drop_and_grow(mag, mask, score, 2)
    assert dropped.tolist() == _b([1, 1, 0, 0, 0, 0]).tolist()
    assert grown.tolist() == _b([0, 0, 0, 1, 1, 0]).tolist()


def test_zero_drop_changes_nothing() -> None:
    mask = torch.rand(4, 5) < 0.5
    new, dropped, grown = drop_and_grow(torch.rand(4, 5), mask, torch.rand(4, 5), 0)
    assert torch.equal(new, mask) and not dropped.any() and not grown.any()


def test_random_configs_conserve_counts_and_respect_the_rules() -> None:
    gen = torch.Generator().manual_seed(0)
    for trial in range(200):
        shape = (int(torch.randint(1, 9, (1,), generator=gen)),
                 int(torch.randint(1, 9, (1,), generator=gen)))
        mask = torch.rand(shape, generator=gen) < float(torch.rand((), generator=gen))
        mag = torch.rand(shape, generator=gen) * mask
        score = torch.randn(shape, generator=gen)
        n = int(mask.sum())
        k = int(torch.randint(0, n + 2, (1,), generator=gen))
        new, dropped, grown = drop_and_grow(mag, mask, score, k)
        kk = min(k, n)
        assert int(new.sum()) == n, trial
        assert int(dropped.sum()) == int(grown.sum()) == kk
        assert not (dropped & ~mask).any()  # only active weights are dropped
        kept = mask & ~dropped
        assert not (grown & kept).any()  # grown among the inactive after the drop
        if kk:
            # Every dropped |w| ≤ every kept |w|; every grown score ≥ every ungrown candidate's.
            if kept.any():
                assert mag[dropped].max() <= mag[kept].min()
            rest = ~kept & ~grown
            if rest.any():
                assert score[grown].min() >= score[rest].max()


def test_restart_zeroes_weight_and_state_of_its_shape() -> None:
    w = nn.Parameter(torch.randn(3, 4))
    opt = torch.optim.Adam([w], lr=0.1)
    w.grad = torch.randn(3, 4)
    opt.step()
    step_before = opt.state[w]["step"].clone()
    where = torch.zeros(3, 4, dtype=torch.bool)
    where[0, 1] = where[2, 3] = True
    before = {k: v.clone() for k, v in opt.state[w].items()}
    w_before = w.detach().clone()
    restart_positions(w, opt, where)
    assert torch.all(w[where] == 0) and torch.equal(w[~where], w_before[~where])
    for key in ("exp_avg", "exp_avg_sq"):
        assert torch.all(opt.state[w][key][where] == 0)
        assert torch.equal(opt.state[w][key][~where], before[key][~where])
        assert torch.any(before[key][where] != 0)  # else the test proves nothing
    assert torch.equal(opt.state[w]["step"], step_before)


def test_step_generator_is_stateless_and_distinct() -> None:
    a = torch.rand(5, generator=step_generator(3, 100, 0))
    b = torch.rand(5, generator=step_generator(3, 100, 0))
    assert torch.equal(a, b)
    for other in (step_generator(3, 101, 0), step_generator(4, 100, 0),
                  step_generator(3, 100, 1)):
        assert not torch.equal(a, torch.rand(5, generator=other))


def test_set_grows_uniformly_among_the_candidates() -> None:
    # 20 positions, 5 active with distinct magnitudes, drop 2: the candidates are the 15
    # inactive + 2 dropped = 17; each is grown with probability 2/17. Chi-square over 3,000 draws.
    grow = MASKERS.get("set")
    mask = torch.zeros(20, dtype=torch.bool)
    mask[:5] = True
    mag = torch.tensor([0.5, 0.1, 0.4, 0.2, 0.3] + [0.0] * 15)
    counts = torch.zeros(20)
    draws = 3000
    for t in range(draws):
        score = grow(mag, None, step_generator(0, t, 0))
        _, _, grown = drop_and_grow(mag, mask, score, 2)
        counts += grown.float()
    cand = [i for i in range(20) if i not in (0, 2, 4)]
    assert counts[[0, 2, 4]].sum() == 0
    observed = counts[cand].numpy()
    expected = [draws * 2 / 17] * 17
    assert stats.chisquare(observed, expected).pvalue > 1e-3


def test_rigl_grows_by_gradient_magnitude() -> None:
    grow = MASKERS.get("rigl")
    g = torch.tensor([[0.1, -3.0], [2.0, 0.5]])
    assert torch.equal(grow(torch.zeros(2, 2), g, step_generator(0, 0, 0)), g.abs())
    with pytest.raises(ValueError):
        grow(torch.zeros(2, 2), None, step_generator(0, 0, 0))


def test_dynamic_maskers_are_registered_with_their_kind() -> None:
    for name in ("set", "rigl"):
        assert MASKERS.meta(name)["kind"] == "dynamic"
        assert MASKERS.describe(name)
    assert MASKERS.meta("rigl")["needs_grad"] and not MASKERS.meta("set")["needs_grad"]
