"""Exact ties survive float arithmetic: paired differences and values are rounded before
ranking, so rank tests agree with scipy on the exact (integer) quantities."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from sparseflow.analysis import compare, kendall_table


def test_equal_count_differences_tie_as_scipy_on_the_integers() -> None:
    # Accuracies k/N over N = 300 test examples; count differences [7, 12, 12, -12, 30, 5].
    n_examples = 300
    dense_k = np.array([23, 20, 21, 33, 22, 25])
    counts = np.array([7, 12, 12, -12, 30, 5])
    sparse, dense = (dense_k + counts) / n_examples, dense_k / n_examples
    exact = stats.wilcoxon(counts, alternative="greater", zero_method="wilcox")
    assert exact.pvalue == pytest.approx(0.109375)
    # The float differences break the ties (this is the bug the rounding fixes) ...
    assert stats.wilcoxon(sparse - dense, alternative="greater").pvalue == pytest.approx(0.09375)
    # ... and the test does not.
    res = compare(list(sparse), list(dense))
    assert res.p_value == pytest.approx(exact.pvalue)
    assert res.statistic == pytest.approx(exact.statistic)


def test_mannwhitney_and_kendall_tie_values_computed_along_different_paths() -> None:
    sparse = [0.1 + 0.2, 0.7, 0.8, 0.9]  # 0.1 + 0.2 != 0.3 in float64
    dense = [0.3, 0.2, 0.4, 0.5]
    res = compare(sparse, dense, test="mannwhitney", n_resamples=99)
    ref = stats.mannwhitneyu([3, 7, 8, 9], [3, 2, 4, 5], alternative="greater")
    assert res.p_value == pytest.approx(ref.pvalue) and res.statistic == ref.statistic
    runs = [{"kind": "sparse", "egf2": x, "test_loss": y, "test_accuracy": 0.5}
            for x, y in ((0.1 + 0.2, 1.0), (0.3, 2.0), (0.5, 3.0), (0.6, 2.5))]
    cell = kendall_table(runs, ["egf2"], ["test_loss"], ["sparse"]).cell(
        "egf2", "sparse", "test_loss")
    ref = stats.kendalltau([3, 3, 5, 6], [1.0, 2.0, 3.0, 2.5])
    assert cell.tau == pytest.approx(ref.statistic)


@pytest.mark.parametrize("alternative", ["greater", "less", "two-sided"])
def test_ties_hold_under_every_alternative_and_for_losses(alternative: str) -> None:
    n_examples = 300
    dense_k = np.array([23, 20, 21, 33, 22, 25, 30])
    counts = np.array([7, 12, 12, -12, 30, 5, -5])
    sparse, dense = (dense_k + counts) / n_examples, dense_k / n_examples
    exact = stats.wilcoxon(counts, alternative=alternative)
    assert compare(list(sparse), list(dense), alternative=alternative).p_value == \
        pytest.approx(exact.pvalue)
    # The same counts as losses (1 − accuracy): sparse better = lower loss = more correct.
    flip = {"greater": "less", "less": "greater", "two-sided": "two-sided"}[alternative]
    loss = compare(list(1 - sparse), list(1 - dense), higher_is_better=False,
                   alternative=alternative)
    assert loss.p_value == pytest.approx(stats.wilcoxon(-counts, alternative=flip).pvalue)
    assert loss.p_value == pytest.approx(exact.pvalue)
