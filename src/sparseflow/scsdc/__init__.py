"""SC-SDC: same-capacity sparse/dense pairs and init-matching policies (pure functions).

- :func:`same_capacity_counts`: how many weights each layer of the wide sparse net keeps so it
  matches its narrow dense twin (per layer, as in the paper, or in total).
- :func:`pair_table`: the pair's per-layer capacity, totals and unmatched (non-pruned) params.
- :func:`apply_init_policy` / :data:`INIT_POLICIES`: redraw the active weights so they follow
  the dense twin's distribution (``dense``) or a sparse-aware alternative; as two steps
  (:func:`draw_init_policy` before the mask is chosen, :func:`scale_init_policy` after).
- :func:`plan_budget` / :class:`Budget`: one weight budget split by a distribution.
"""

from __future__ import annotations

from sparseflow.scsdc.budget import (
    DISTRIBUTIONS,
    Budget,
    distribute_budget,
    er_densities,
    erk_densities,
    plan_budget,
)
from sparseflow.scsdc.init_policies import (
    INIT_POLICIES,
    apply_init_policy,
    draw_init_policy,
    scale_init_policy,
)
from sparseflow.scsdc.pairing import (
    MATCHINGS,
    LayerPair,
    PairTable,
    non_pruned_counts,
    pair_table,
    same_capacity_counts,
)

__all__ = [
    "DISTRIBUTIONS",
    "Budget",
    "INIT_POLICIES",
    "MATCHINGS",
    "LayerPair",
    "PairTable",
    "apply_init_policy",
    "distribute_budget",
    "draw_init_policy",
    "er_densities",
    "erk_densities",
    "non_pruned_counts",
    "pair_table",
    "plan_budget",
    "same_capacity_counts",
    "scale_init_policy",
]
