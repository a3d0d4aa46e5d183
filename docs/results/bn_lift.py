"""Finding 1 as an interaction: does BatchNorm lift sparse nets more than their dense twins?

Reads a `sparseflow study export --format csv` of the `bn` preset and prints, per optimizer and
per pair of variants without/with BatchNorm (NR→BN, DA→DA_BN, L2→L2_BN, SC→SC_BN), the mean BN
lift of the sparse nets, the mean lift of their dense twins, and the difference of the two lifts
(in points of test accuracy) with its 95% BCa bootstrap CI and the one-sided Wilcoxon p of
H1 "the sparse lift is larger". A unit is one (dense width, hidden layers, seed): its sparse
lift is acc(sparse, X_BN) − acc(sparse, X), its dense lift the same for the dense twins.

    python docs/results/bn_lift.py bn.csv [--markdown]
"""

from __future__ import annotations

import csv
import sys
from collections import defaultdict

from sparseflow.analysis import compare

PAIRS = (("NR", "BN"), ("DA", "DA_BN"), ("L2", "L2_BN"), ("SC", "SC_BN"))
UNIT = ("dense_width", "model.hidden_layers", "seed")


def _accuracies(path: str) -> dict[tuple, float]:
    """(optimizer, variant, kind, unit...) → test accuracy (%) of the finished runs."""
    acc = {}
    with open(path, newline="") as f:
        for r in csv.DictReader(f):
            if r["status"] == "finished" and r["test_accuracy"]:
                key = (r["optim.name"], r["variant"], r["kind"], *(r[u] for u in UNIT))
                acc[key] = 100 * float(r["test_accuracy"])
    return acc


def lifts(acc: dict[tuple, float], opt: str, base: str, bn: str) -> tuple[list, list]:
    """Paired (sparse lift, dense lift) lists over the units that have all four runs."""
    units = defaultdict(dict)
    for (o, v, kind, *unit), a in acc.items():
        if o == opt and v in (base, bn):
            units[tuple(unit)][(v, kind)] = a
    s, d = [], []
    for runs in units.values():
        if len(runs) == 4:
            s.append(runs[(bn, "sparse")] - runs[(base, "sparse")])
            d.append(runs[(bn, "dense")] - runs[(base, "dense")])
    return s, d


def main(path: str, markdown: bool) -> None:
    acc = _accuracies(path)
    opts = list(dict.fromkeys(k[0] for k in acc))
    head = "| optimizer | " + " | ".join(f"{a}→{b}" for a, b in PAIRS) + " |"
    print(head)
    print("|---|" + "---|" * len(PAIRS))
    for opt in opts:
        cells = []
        for base, bn in PAIRS:
            s, d = lifts(acc, opt, base, bn)
            if len(s) < 2:
                cells.append("n/a")
                continue
            res = compare(s, d, alternative="greater")
            mean_s, mean_d = sum(s) / len(s), sum(d) / len(d)
            p = "<0.001" if res.p_value < 0.001 else f"={res.p_value:.3f}"
            text = (f"{mean_s:+.2f} vs {mean_d:+.2f}: {res.mean_diff:+.2f} "
                    f"[{res.ci_low:+.2f}, {res.ci_high:+.2f}], p{p}, n={res.n}")
            cells.append(f"**{text}**" if markdown and res.p_value <= 0.05 else text)
        print(f"| {opt} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main(sys.argv[1], "--markdown" in sys.argv[2:])
