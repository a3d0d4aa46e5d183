"""Sparse-only axes (``sparsity.*``): dense twins planned once and shared, the one pairing rule
(plan, export, p-value table, power check), and method-vs-baseline tables."""

from __future__ import annotations

import hashlib
import math
from pathlib import Path

import pytest
import yaml
from scipy import stats

import sparseflow  # noqa: F401
from sparseflow import presets
from sparseflow.analysis import pvalue_table
from sparseflow.analysis.table_render import title
from sparseflow.analysis.tables import pair_up
from sparseflow.errors import ConfigError
from sparseflow.store import StudyStore
from sparseflow.store.pairing import match, sparse_only_axes
from sparseflow.studies import StudySpec, expand, load_spec, run_study
from sparseflow.studies.power_check import cell_pairs

from tests.test_cli import _assert_one_line_error, _run
from tests.test_studies_plan import spec_dict

MASKERS = ["random", "magnitude"]


def _plan(**over):
    return expand(StudySpec.model_validate(spec_dict(**over)))


# The plan ----------------------------------------------------------------------------------
def test_dense_twins_are_planned_once_and_carry_no_sparse_only_axis() -> None:
    plan = _plan(axes={"sparsity.masker": MASKERS, "optim.name": ["adam", "sgd"]})
    counts = plan.counts()
    # 2 maskers × 2 optimizers × 2 variants × 2 widths × 2 seeds sparse runs; dense runs do not
    # multiply by the maskers.
    assert counts["sparse_runs"] == 32 and counts["dense_runs"] == 16 == counts["pairs"] / 2
    assert counts["shared_dense_runs"] == 16 and counts["runs"] == 48
    assert plan.sparse_only_axes() == ["sparsity.masker"]
    assert plan.spec.run_count() == len(plan.runs)  # the size check counts each twin once
    dense = [r for r in plan.runs if r.kind == "dense"]
    assert all("sparsity.masker" not in r.cell for r in dense)
    assert all(r.config["sparsity"].get("masker", "random") == "random" for r in dense)
    sparse = [r for r in plan.runs if r.kind == "sparse"]
    assert {r.config["sparsity"]["masker"] for r in sparse} == set(MASKERS)
    # every sparse run finds exactly one twin: same width, seed and every other axis
    twins = {(r.dense_width, r.seed, r.cell["optim.name"], r.cell["variant"]): r for r in dense}
    assert len(twins) == 16
    for r in sparse:
        twin = twins[(r.dense_width, r.seed, r.cell["optim.name"], r.cell["variant"])]
        assert twin.config["model"]["width"] == r.dense_width


def test_a_sparse_only_axis_leaves_the_dense_ids_of_the_study_without_it() -> None:
    without = _plan()
    with_axis = _plan(axes={"optim.name": ["adam", "sgd"], "sparsity.masker": MASKERS})
    dense = lambda p: {(r.run_key, tuple(sorted(r.cell.items())))  # noqa: E731
                       for r in p.runs if r.kind == "dense"}
    assert dense(with_axis) == dense(without)
    assert "shared_dense_runs" not in without.counts()


def test_a_base_masker_keeps_its_old_ids_and_still_pairs() -> None:
    spec = spec_dict(axes={"optim.name": ["sgd"]}, variants=["NR"],
                     scsdc={"sparse_width": 40, "dense_widths": [8]}, seeds=1)
    spec["base"] = {**spec["base"], "sparsity": {"masker": "magnitude"}}
    runs = sorted((r.kind, r.run_key) for r in expand(StudySpec.model_validate(spec)).runs)
    # the ids this spec had before sparse-only axes existed
    assert runs == [("dense", "dcddf3033fed-s0"), ("sparse", "647d9a7456db-s0")]
    # a sparsity axis on top of it: the dense twin (which keeps the base's section) is shared
    spec["axes"] = {"optim.name": ["sgd"], "sparsity.masker": ["magnitude", "random"]}
    plan = expand(StudySpec.model_validate(spec))
    assert [r.run_key for r in plan.runs if r.kind == "dense"] == ["dcddf3033fed-s0"]
    assert "647d9a7456db-s0" in {r.run_key for r in plan.runs}


#: sha256 (first 16 hex) of the run keys, in plan order, before sparse-only axes existed: the
#: quickstart and the first cpu presets (kept in tests/data/presets_v1 since the presets were
#: revised), so a code change that would change the id of an existing run fails here.
PINNED = {
    "quickstart": (60, "066f2853f6ab404a"),
    "v1/bn": (480, "5aae76027dc84a15"),
    "v1/ewma": (288, "f828fc87bdce1b91"),
    "v1/activations": (360, "2dff93ec12a3e8ea"),
    "v1/correlation": (288, "964bf6a771487c84"),
    # the revised cpu presets; bn, ewma and activations list model.hidden_layers last so
    # that their default table has the paper's rows (optimizers): same runs, new order
    "cpu/bn": (1200, "ae2084735d40f2de"),
    "cpu/ewma": (750, "dc68ad602aa4fe52"),
    "cpu/activations": (900, "804f6f952f3d9fca"),
    "cpu/correlation": (432, "e2a9f5f3e1121574"),
}


def _pinned_path(name: str) -> Path:
    root = Path(__file__).resolve().parents[1]
    if name == "quickstart":
        return root / "configs/studies/quickstart.yaml"
    where, preset = name.split("/")
    if where == "v1":
        return root / "tests/data/presets_v1" / f"{preset}.yaml"
    return presets.preset_path(preset, where)


@pytest.mark.parametrize("name", PINNED)
def test_preset_run_keys_are_unchanged(name: str) -> None:
    plan = expand(load_spec(_pinned_path(name)))
    keys = "\n".join(r.run_key for r in plan.runs).encode()
    assert (len(plan.runs), hashlib.sha256(keys).hexdigest()[:16]) == PINNED[name]


#: The set of run keys (sorted) of the revised cpu presets as first planned, before their axes
#: were reordered: a study stored under the first order must resume without rerunning a run.
FIRST_PLANNED_SETS = {"cpu/bn": "efc6e1e32f6b1cc4", "cpu/ewma": "04a92c436a7b806c",
                      "cpu/activations": "a08fe28c924963e9"}


@pytest.mark.parametrize("name", FIRST_PLANNED_SETS)
def test_reordered_presets_keep_their_run_keys(name: str) -> None:
    keys = sorted(r.run_key for r in expand(load_spec(_pinned_path(name))).runs)
    assert hashlib.sha256("\n".join(keys).encode()).hexdigest()[:16] == FIRST_PLANNED_SETS[name]


def test_a_variant_setting_a_sparse_only_key_is_refused() -> None:
    spec = StudySpec.model_validate(spec_dict(
        variants=["NR", "MAG"], variant_defs={"MAG": {"sparsity.masker": "magnitude"}}))
    with pytest.raises(ConfigError, match=r"axes: \{sparsity.masker: \[...\]\}"):
        expand(spec)


def test_power_check_counts_the_shared_twins_in_every_row() -> None:
    plan = _plan(axes={"sparsity.masker": MASKERS}, seeds=3)
    cells = {(c.row, c.col): c.n for c in cell_pairs(plan)}
    # rows = masker, cols = variant: each cell holds widths × seeds = 6 pairs
    assert cells == {(m, v): 6 for m in MASKERS for v in ("NR", "BN")}


# The pairing rule --------------------------------------------------------------------------
def _row(kind: str, width: int, seed: int, value: float, **cell) -> dict:
    return {"kind": kind, "dense_width": width, "seed": seed, "test_accuracy": value,
            "status": "finished", **cell}


def test_match_pairs_one_dense_twin_with_every_sparse_only_value() -> None:
    rows = [
        _row("dense", 8, 0, 0.5, variant="NR"),                                    # 0
        _row("sparse", 8, 0, 0.6, variant="NR", **{"sparsity.masker": "random"}),  # 1
        _row("sparse", 8, 0, 0.7, variant="NR", **{"sparsity.masker": "snip"}),    # 2
        _row("sparse", 8, 1, 0.7, variant="NR", **{"sparsity.masker": "snip"}),    # 3: no twin
        _row("dense", 8, 0, 0.4, variant="BN"),                                    # 4: no partner
    ]
    axes = ["sparsity.masker", "variant"]
    assert sparse_only_axes(rows, axes) == ("sparsity.masker",)
    m = match(rows, axes)
    assert m.twin == {1: 0, 2: 0} and m.partners() == {0: [1, 2]}
    assert (m.unmatched_sparse, m.unmatched_dense) == (1, 1) and not m.clashes
    # an ordinary axis that every run lacks stays part of the key (None == None)
    assert sparse_only_axes(rows, ["optim.lr"]) == ()
    # two dense runs with one key: no partner can be chosen
    clash = match([*rows, _row("dense", 8, 0, 0.1, variant="NR")], axes)
    assert 1 not in clash.twin and clash.clashes[0][0] == "dense"


def _factor_rows() -> list[dict]:
    """2 maskers × 2 variants × 2 widths × 3 seeds sparse runs; their dense twins once."""
    out = []
    for v_i, variant in enumerate(("NR", "BN")):
        for width in (8, 16):
            for seed in range(3):
                base = 0.5 + 0.01 * seed + 0.02 * v_i + 0.001 * width
                out.append(_row("dense", width, seed, base, variant=variant))
                for m_i, masker in enumerate(("random", "snip", "rigl")):
                    gap = (m_i - 1) * 0.01 + 0.003 * seed - 0.0005 * width
                    out.append(_row("sparse", width, seed, base + gap, variant=variant,
                                    **{"sparsity.masker": masker}))
    return out


def test_rows_by_a_sparse_only_axis_compare_with_the_shared_twins() -> None:
    rows = _factor_rows()
    table = pvalue_table(rows, rows="sparsity.masker", cols="variant", n_resamples=99)
    assert table.row_values == ("random", "snip", "rigl") and table.col_values == ("NR", "BN")
    assert table.sparse_only == ("sparsity.masker",) and table.sides == ("sparse", "dense")
    for masker in table.row_values:
        for variant in table.col_values:
            dense = {(r["dense_width"], r["seed"]): r["test_accuracy"] for r in rows
                     if r["kind"] == "dense" and r["variant"] == variant}
            diffs = [r["test_accuracy"] - dense[(r["dense_width"], r["seed"])] for r in rows
                     if r["kind"] == "sparse" and r["variant"] == variant
                     and r["sparsity.masker"] == masker]
            cell = table.cell(masker, variant)
            assert cell.result.n == 6 and "without a partner" not in cell.result.note
            want = stats.wilcoxon(diffs, alternative="greater").pvalue
            assert cell.p_adjusted == pytest.approx(want, rel=1e-9)
            assert cell.result.diff == pytest.approx(sum(diffs) / 6, abs=1e-12)


def test_pooling_a_sparse_only_axis_reuses_the_twin_for_each_value() -> None:
    rows = _factor_rows()
    table = pvalue_table(rows, rows="variant", cols="dense_width", n_resamples=99)
    # a cell pools the maskers: 3 maskers × 3 seeds pairs, each against its seed's twin
    assert {c.result.n for c in table.ordered()} == {9}
    pairs = pair_up(rows, "test_accuracy", within=["sparsity.masker", "variant"])
    assert len(pairs.sparse) == 36 and pairs.unmatched_dense == 0


@pytest.mark.parametrize("alternative", ["greater", "two-sided"])
def test_baseline_table_is_the_wilcoxon_test_of_method_minus_baseline(alternative: str
                                                                      ) -> None:
    rows = _factor_rows()
    table = pvalue_table(rows, cols="variant", baseline=("sparsity.masker", "random"),
                         alternative=alternative, n_resamples=99)
    assert table.row_axis == "sparsity.masker" and table.row_values == ("snip", "rigl")
    assert table.sides == ("A", "baseline")
    for masker in table.row_values:
        for variant in table.col_values:
            base = {(r["dense_width"], r["seed"]): r["test_accuracy"] for r in rows
                    if r["kind"] == "sparse" and r["variant"] == variant
                    and r["sparsity.masker"] == "random"}
            diffs = [r["test_accuracy"] - base[(r["dense_width"], r["seed"])] for r in rows
                     if r["kind"] == "sparse" and r["variant"] == variant
                     and r["sparsity.masker"] == masker]
            cell = table.cell(masker, variant)
            assert cell.result.n == 6
            want = stats.wilcoxon(diffs, alternative=alternative).pvalue
            assert cell.p_adjusted == pytest.approx(want, rel=1e-9)
    words = " ".join(table.caption_lines()) + " ".join(table.summary_lines())
    assert "A vs baseline" in words and "sparsity.masker=random" in words
    assert "A − baseline" in words and "sparse − dense" not in words
    if alternative == "greater":
        assert title(table) == ("Is each sparsity.masker value better than "
                                "sparsity.masker=random on test_accuracy?")


def test_baseline_refusals() -> None:
    rows = _factor_rows()
    with pytest.raises(ValueError, match="no finished sparse run has sparsity.masker='set'"):
        pvalue_table(rows, baseline=("sparsity.masker", "set"))
    with pytest.raises(ValueError, match="pick other cols"):
        pvalue_table(rows, cols="sparsity.masker", baseline=("sparsity.masker", "random"))


# A small real study ------------------------------------------------------------------------
@pytest.fixture(scope="module")
def study(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """masker ∈ {random, magnitude} × NR × dense width 8 × 2 seeds, 1 epoch: 4 sparse runs and
    2 shared dense twins (seconds)."""
    root = tmp_path_factory.mktemp("factor")
    spec = spec_dict(axes={"sparsity.masker": MASKERS}, variants=["NR"], seeds=2,
                     scsdc={"sparse_width": 40, "dense_widths": [8]})
    spec["base"]["train"]["epochs"] = 1
    spec_path = root / "spec.yaml"
    spec_path.write_text(yaml.safe_dump(spec))
    outcome = run_study(expand(load_spec(spec_path)), root / "study", jobs=1)
    assert outcome.finished == outcome.planned == 6
    return spec_path, root / "study"


def test_real_study_pairs_each_dense_twin_with_both_maskers(study) -> None:
    _, directory = study
    with StudyStore(directory, readonly=True) as store:
        rows = store.results()
    dense = [r for r in rows if r["kind"] == "dense"]
    sparse = [r for r in rows if r["kind"] == "sparse"]
    assert len(dense) == 2 and len(sparse) == 4
    assert all(r["sparsity.masker"] is None and r["pair_id"] == r["run_key"] for r in dense)
    by_twin = {d["run_key"]: d for d in dense}
    for r in sparse:
        twin = by_twin[r["pair_id"]]
        assert (twin["dense_width"], twin["seed"], twin["variant"]) == \
            (r["dense_width"], r["seed"], r["variant"])
        assert twin["sparse_width"] == r["sparse_width"] == 40
    assert {(r["pair_id"], r["sparsity.masker"]) for r in sparse} == {
        (d["run_key"], m) for d in dense for m in MASKERS}
    table = pvalue_table(rows, rows="sparsity.masker", cols="variant", n_resamples=99)
    assert {(c.row, c.result.n) for c in table.ordered()} == {("random", 2), ("magnitude", 2)}


def test_cli_plan_status_and_baseline_tests(study, capsys) -> None:
    spec_path, directory = study
    code, out, _ = _run(["study", "plan", str(spec_path)], capsys)
    assert code == 0 and "shared dense runs" in out and "sparse-only axes: sparsity.masker" in out
    code, out, _ = _run(["study", "status", str(directory)], capsys)
    assert code == 0 and "dense runs: 2, 2 of them shared (the twin of 2 sparse runs" in out
    code, out, _ = _run(["study", "tests", str(directory), "--baseline",
                         "sparsity.masker=random", "--format", "csv"], capsys)
    assert code == 0, out
    lines = out.strip().splitlines()
    # one variant: the columns are the next main axis, the dense width
    assert lines[0].startswith("sparsity.masker,dense_width,") and len(lines) == 2
    assert lines[1].startswith("magnitude,8,")
    code, out, _ = _run(["study", "tests", str(directory), "--format", "csv"], capsys)
    assert code == 0 and [ln.split(",")[0] for ln in out.strip().splitlines()[1:]] == MASKERS


@pytest.mark.parametrize("value,needle", [
    ("sparsity.masker", "give AXIS=VALUE"),
    ("optim.lr=0.1", "'optim.lr' is not a swept axis"),
    ("sparsity.masker=set", "values: random, magnitude"),
])
def test_cli_baseline_errors_are_one_line(study, capsys, value: str, needle: str) -> None:
    _, directory = study
    code, _, err = _run(["study", "tests", str(directory), "--baseline", value], capsys)
    _assert_one_line_error(code, err, needle)


def test_nan_metric_is_dropped_not_paired_twice() -> None:
    rows = _factor_rows()
    rows[1]["test_accuracy"] = math.nan  # a sparse run without a value
    table = pvalue_table(rows, rows="sparsity.masker", cols="variant", n_resamples=99)
    assert table.cell("random", "NR").result.n_dropped == 1


def test_report_figures_put_the_shared_twins_under_every_masker(study) -> None:
    from sparseflow.report.data import load_study
    from sparseflow.report.series import difference_figure, width_figure

    _, directory = study
    data = load_study(directory)
    assert data.sparse_only == ("sparsity.masker",)
    colors = {"NR": "C0"}
    diff = difference_figure(data, "test_accuracy", "sparsity.masker", "variant", colors,
                             test="wilcoxon", name="d", title="t")
    assert [p.title for p in diff.panels] == [f"sparsity.masker = {m}" for m in MASKERS]
    for panel in diff.panels:  # each masker: its 2 sparse runs against the 2 shared twins
        (line,) = panel.series
        assert line.n == [2]
    widths = width_figure(data, "test_accuracy", None, "sparsity.masker",
                          {m: "C0" for m in MASKERS}, name="w", title="t")
    kinds = {(s.label, s.kind): s.n for s in widths.panels[0].series}
    assert kinds == {(m, k): [2] for m in MASKERS for k in ("sparse", "dense")}


def test_an_axis_on_a_scsdc_key_sweeps_it() -> None:
    # scsdc.init is the default of the sparse runs' init policy; an axis on it wins
    plan = _plan(axes={"sparsity.init": ["dense", "sparse_fanin"]}, variants=["NR"])
    sparse = [r for r in plan.runs if r.kind == "sparse"]
    assert {(r.cell["sparsity.init"], r.config["sparsity"]["init"]) for r in sparse} == {
        ("dense", "dense"), ("sparse_fanin", "sparse_fanin")}
    assert plan.counts()["dense_runs"] == 4 and plan.counts()["sparse_runs"] == 8
    with pytest.raises(ConfigError, match="widths come from scsdc"):
        _plan(axes={"sparsity.dense_width": [3]})
