"""The report on mask methods: the method-vs-random table, EGF at the mask updates, the
layer-wise density profile — checked against the numbers in the run directories."""

from __future__ import annotations

import html as htmlmod
import json
import re
from pathlib import Path

import numpy as np
import pytest

from sparseflow.analysis import pvalue_table
from sparseflow.analysis import table_text as text
from sparseflow.report import ReportError, build_report
from sparseflow.report.data import RunSeries, _read_dst, load_series, load_study
from sparseflow.report.series_masks import (
    layer_density_figure,
    mask_updates_figure,
    profiles_differ,
)
from sparseflow.store import StudyStore
from sparseflow.studies import expand, run_study
from sparseflow.studies.spec import StudySpec

from tests.test_report import _cells, _section
from tests.test_studies_plan import spec_dict

MASKERS = ["random", "global_magnitude", "rigl"]


def _study(directory: Path, maskers: list[str], widths: list[int]) -> Path:
    """mnist1d, sparse width 40, 2 epochs of ~8 batches, a rigl update every 3 steps, 2 seeds."""
    spec = spec_dict(axes={"sparsity.masker": maskers}, variants=["NR"], seeds=2,
                     scsdc={"sparse_width": 40, "dense_widths": widths})
    spec["base"] = {**spec["base"], "sparsity": {"dst": {"update_every": 3}}}
    plan = expand(StudySpec.model_validate(spec))
    outcome = run_study(plan, directory, jobs=1)
    assert outcome.failed == 0 and outcome.finished == len(plan.runs)
    return directory


@pytest.fixture(scope="module")
def masks_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _study(tmp_path_factory.mktemp("masks") / "study", MASKERS, [8, 16])


@pytest.fixture(scope="module")
def page(masks_dir: Path) -> str:
    return build_report(masks_dir).html.read_text()


def _run_files(directory: Path, name: str) -> list[tuple[dict, dict]]:
    """(export row, the run directory's file ``name``) of every finished sparse run."""
    with StudyStore(directory, create=False) as store:
        rows = [r for r in store.results() if r["status"] == "finished"]
    out = []
    for r in rows:
        path = directory / "runs" / r["run_key"] / name
        if r["kind"] == "sparse" and path.exists():
            out.append((r, json.loads(path.read_text())))
    return out


def test_page_adds_the_mask_figures_in_order(page: str) -> None:
    assert re.findall(r'<figure id="([^"]+)"', page) == [
        "test_accuracy_vs_width", "test_accuracy_difference", "curves_grid", "curves",
        "egf2_vs_width", "egf2_training", "egf2_mask_updates", "egf2_per_layer",
        "layer_density_profile", "kendall_by_width"]


def test_baseline_table_shows_pvalue_tables_numbers(masks_dir: Path, page: str) -> None:
    with StudyStore(masks_dir, create=False) as store:
        rows = store.results()
    # one variant: the columns are the dense widths, as `study tests --baseline` lays them out
    table = pvalue_table(rows, "test_accuracy", rows="sparsity.masker", cols="dense_width",
                         axes=["sparsity.masker", "variant"],
                         baseline=("sparsity.masker", "random"))
    records = table.to_records()
    assert [(r["sparsity.masker"], r["dense_width"]) for r in records] == [
        ("global_magnitude", 8), ("global_magnitude", 16), ("rigl", 8), ("rigl", 16)]
    assert all(r["n"] == 2 for r in records)  # 2 seeds, random's runs as partners
    cells = _cells(_section(page, "pvalues-baseline"))
    assert len(cells) == len(records)
    for shown, cell, r in zip(cells, table.ordered(), records, strict=True):
        p_words = text.p_text(cell).split()
        assert shown[:len(p_words)] == p_words and shown[-1] == f"n={r['n']}"
        gap_at = len(p_words)
        gap = float(shown[gap_at].replace("−", "-"))  # A − baseline, in points
        places = len(shown[gap_at].partition(".")[2])
        assert gap == pytest.approx(100 * r["diff"], abs=0.5 * 10**-places + 1e-9)
    assert htmlmod.escape(table.caption("html")) in page
    for line in table.summary_lines():
        assert htmlmod.escape(line) in page
    assert "Is each sparsity.masker better than sparsity.masker=random?" in page
    # the paper's sparse-vs-dense table is still there, first
    assert page.index('<table class="pvalues">') < page.index('<table class="pvalues-baseline">')


def test_mask_updates_are_geometric_means_of_dst_json(masks_dir: Path) -> None:
    study = load_study(masks_dir)
    fd = mask_updates_figure(study, load_series(study, study.finished), {"rigl": "#000"},
                             name="egf2_mask_updates")
    assert fd is not None and fd.grid == (1, 2) and fd.col_labels == ["W_D = 8", "W_D = 16"]
    files = _run_files(masks_dir, "dst.json")
    assert len(files) == 4 and {r["sparsity.masker"] for r, _ in files} == {"rigl"}
    for panel, width in zip(fd.panels, (8, 16), strict=True):
        assert [(s.label, s.kind) for s in panel.series] == [("rigl", "before"),
                                                             ("rigl", "after")]
        for s in panel.series:
            at: dict[float, list[float]] = {}
            for r, dst in files:
                if r["dense_width"] == width:
                    for u in dst["updates"]:
                        at.setdefault(float(u["step"]), []).append(u[s.kind]["egf2"])
            assert len(at) >= 3  # the schedule made several updates
            assert s.x == sorted(at) and s.n == [2] * len(at)  # both seeds at every update
            expected = [float(np.exp(np.mean(np.log(at[x])))) for x in sorted(at)]
            assert s.y == pytest.approx(expected, rel=1e-12)
    # the update itself changes EGF: the figure would be flat otherwise
    assert any(b != a for p in fd.panels for b, a in zip(p.series[0].y, p.series[1].y,
                                                         strict=True))


def test_layer_density_profile_is_the_mean_of_the_summaries(masks_dir: Path) -> None:
    study = load_study(masks_dir)
    series = load_series(study, study.finished)
    assert profiles_differ(study, series, "sparsity.masker")
    fd = layer_density_figure(study, series, 8, "sparsity.masker", {}, name="p")
    summaries = [(r, s) for r, s in _run_files(masks_dir, "summary.json")
                 if r["dense_width"] == 8]
    layers = list(summaries[0][1]["layer_densities"])
    assert fd.xticklabels == ["hidden.0", "hidden.1", "out"] and fd.xticks == [0.0, 1.0, 2.0]
    (panel,) = fd.panels
    assert [s.label for s in panel.series] == MASKERS
    for s in panel.series:
        got = [[100 * sm["layer_densities"][n] for r, sm in summaries
                if r["sparsity.masker"] == s.label] for n in layers]
        assert s.y == pytest.approx([float(np.mean(g)) for g in got], rel=1e-12)
        assert s.n == [2, 2, 2]
    # a random and a rigl run of one seed start from the same per-layer densities
    by = {s.label: s.y for s in panel.series}
    assert by["random"] == pytest.approx(by["rigl"]) and by["random"] != by["global_magnitude"]


def test_same_profile_for_every_masker_is_said_not_drawn(tmp_path: Path) -> None:
    directory = _study(tmp_path / "study", ["random", "rigl"], [8])
    page = build_report(directory).html.read_text()
    ids = re.findall(r'<figure id="([^"]+)"', page)
    assert "egf2_mask_updates" in ids and "layer_density_profile" not in ids
    assert ("Every sparsity.masker value gave the initial masks the same per-layer densities"
            in page)
    assert "pvalues-baseline" in page  # rigl against random


def _fake(kind: str, seed: int, masker: str, densities: dict[str, float]) -> RunSeries:
    row = {"kind": kind, "dense_width": 8, "seed": seed, "sparsity.masker": masker,
           "variant": "NR"}
    return RunSeries(row, [], [], {"layer_densities": densities} if kind == "sparse" else {})


def test_profiles_differ_only_within_a_matched_pair() -> None:
    from tests.test_report_data import _study as fake_study

    study = fake_study({"sparsity.masker": ["random", "snip"], "variant": ["NR"]}, [])
    same = [_fake("sparse", s, m, {"a": 0.5, "b": 0.1}) for s in (0, 1)
            for m in ("random", "snip")]
    assert not profiles_differ(study, same, "sparsity.masker")
    # seeds differ in their profile, the methods within a seed do not: no method chose one
    seeds = [_fake("sparse", s, m, {"a": 0.5 + s / 10, "b": 0.1}) for s in (0, 1)
             for m in ("random", "snip")]
    assert not profiles_differ(study, seeds, "sparsity.masker")
    chose = [*same[:3], _fake("sparse", 1, "snip", {"a": 0.4, "b": 0.2})]
    assert profiles_differ(study, chose, "sparsity.masker")
    assert mask_updates_figure(study, chose, {}, name="x") is None  # no dst.json: no figure


def test_a_malformed_dst_json_is_one_clear_error(tmp_path: Path) -> None:
    (tmp_path / "dst.json").write_text("[1, 2]")
    with pytest.raises(ReportError, match="not a mask-update series"):
        _read_dst(tmp_path)
    assert _read_dst(tmp_path / "nowhere") is None
