"""`sparseflow study report`: one self-contained HTML page, its figures, its errors."""

from __future__ import annotations

import base64
import html as htmlmod
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import matplotlib.image as mpimg
import numpy as np
import pytest
from matplotlib.colors import to_hex, to_rgb

from sparseflow import __version__
from sparseflow.analysis import kendall_table, pvalue_table
from sparseflow.report import PALETTE, color_at, draw, value_colors
from sparseflow.report.data import load_study
from sparseflow.report.series import width_figure
from sparseflow.store import PlannedRun, StudyStore
from sparseflow.studies import expand, run_study
from sparseflow.studies.spec import StudySpec

from tests.test_cli import _assert_one_line_error, _run
from tests.test_studies_plan import spec_dict

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
IMG = '<img src="data:image/png;base64,'
FIGURES = ("test_accuracy_vs_width", "test_accuracy_difference", "curves_grid", "curves",
           "egf2_vs_width", "egf2_training", "egf2_per_layer", "kendall_by_width")
#: Page width of each PDF in points (72 per inch): two-column 7 in, one-column 3.5 in.
PDF_WIDTHS = {".pdf": 504.0, "-1col.pdf": 252.0}


@dataclass(frozen=True)
class Built:
    """The tiny study and its default report."""

    study: Path
    html: str
    code: int
    err: str


@pytest.fixture(scope="module")
def study_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """2 optimizers × NR/BN × 2 dense widths × 3 seeds (6 pairs per cell: testable), 2 epochs."""
    directory = tmp_path_factory.mktemp("report") / "study"
    plan = expand(StudySpec.model_validate(spec_dict(seeds=3)))
    outcome = run_study(plan, directory, jobs=2)
    assert outcome.finished == 48 and outcome.failed == 0
    return directory


@pytest.fixture(scope="module")
def built(study_dir: Path) -> Built:
    """`study report DIR` run once (the capsys fixture is function-scoped: capture by hand)."""
    from contextlib import redirect_stderr, redirect_stdout
    from io import StringIO

    from sparseflow.cli import main

    out, err, code = StringIO(), StringIO(), 0
    with redirect_stdout(out), redirect_stderr(err):
        try:
            main(["study", "report", str(study_dir)])
        except SystemExit as exc:
            code = int(exc.code or 0)
    page = study_dir / "report" / "report.html"
    return Built(study_dir, page.read_text() if page.exists() else "", code, err.getvalue())


def _section(page: str, css_class: str) -> str:
    match = re.search(rf'<table class="{css_class}">(.*?)</table>', page, re.S)
    assert match, f"no table {css_class}"
    return match.group(1)


def _cells(table_html: str) -> list[str]:
    """Visible text of each <td> (tags dropped, the n line separate), row-major."""
    return [htmlmod.unescape(re.sub(r"<[^>]+>", " ", td)).split()
            for td in re.findall(r"<td[^>]*>(.*?)</td>", table_html, re.S)]


def test_report_is_one_self_contained_page(built: Built) -> None:
    assert built.code == 0, built.err
    page = built.html
    assert page.startswith("<!DOCTYPE html>")
    assert "http://" not in page and "https://" not in page  # no external resource
    assert "<script" not in page and "<link" not in page
    # one embedded PNG per figure, each a real PNG
    payloads = re.findall(r'<img src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)
    assert page.count(IMG) == len(payloads) == len(FIGURES)
    assert all(base64.b64decode(p).startswith(PNG_MAGIC) for p in payloads)
    for section in ("Summary", "Is sparse better than same-capacity dense?", "Kendall τ",
                    "Training curves", "Average EGF against dense width",
                    "Kendall τ within each dense width", "Gradient flow per layer"):
        assert section in page
    # the figures in the page's order, each once
    assert re.findall(r'<figure id="([^"]+)"', page) == list(FIGURES)
    # no mask-method axis, no dynamic masker: no baseline table, no mask figure or note
    assert "pvalues-baseline" not in page and "=random?" not in page
    assert "Layer-wise density" not in page and "mask update" not in page


def test_every_figure_is_written_as_png_and_pdf(built: Built) -> None:
    folder = built.study / "report"
    assert sorted(p.name for p in folder.glob("*.png")) == sorted(f"{f}.png" for f in FIGURES)
    assert sorted(p.name for p in folder.glob("*.pdf")) == sorted(
        f"{f}{suffix}" for f in FIGURES for suffix in PDF_WIDTHS)
    for name in FIGURES:
        png = (folder / f"{name}.png").read_bytes()
        assert png.startswith(PNG_MAGIC) and len(png) > 10_000
        for suffix, width in PDF_WIDTHS.items():
            pdf = (folder / f"{name}{suffix}").read_bytes()
            assert pdf.startswith(b"%PDF") and b"%%EOF" in pdf[-64:]
            # TrueType fonts embedded (pdf.fonttype 42), no Type 3 bitmap-like fonts
            assert b"/Subtype /Type3" not in pdf and b"/FontFile2" in pdf, name + suffix
            box = re.search(rb"/MediaBox \[\s*0 0 ([\d.]+) ([\d.]+)\s*\]", pdf)
            assert box and float(box.group(1)) == pytest.approx(width, abs=0.5), name + suffix
    assert f'href="{FIGURES[0]}-1col.pdf"' in built.html  # the page links its files
    assert not list(folder.glob(".*.tmp"))  # atomic writes leave no temporary file


def test_pvalue_table_shows_the_analysis_numbers(built: Built) -> None:
    with StudyStore(built.study, create=False) as store:
        rows = store.results()
    table = pvalue_table(rows, "test_accuracy", rows="optim.name", cols="variant",
                         axes=["optim.name", "variant"])
    records = table.to_records()
    assert len(records) == 4 and all(r["n"] == 6 for r in records)  # 2 widths × 3 seeds
    cells = _cells(_section(built.html, "pvalues"))
    for shown, r in zip(cells, records, strict=True):
        # "p = 0.016", then sparse − dense in points with its CI, then n.
        p = r["p_adjusted"]
        assert shown[:3] == (["p", "<", "0.001"] if p < 0.001 else ["p", "=", f"{p:.3f}"])
        assert shown[4] == "pts" and shown[-1] == f"n={r['n']}"
        texts = [x.strip("[],") for x in (shown[3], shown[5], shown[6])]
        places = len(texts[0].partition(".")[2])  # shown rounded to this many places
        gap = [float(x.replace("−", "-")) for x in texts]
        assert gap == pytest.approx([100 * r["diff"], 100 * r["diff_ci_low"],
                                     100 * r["diff_ci_high"]], abs=0.5 * 10**-places + 1e-9)
    for rec, td in zip(records, re.findall(r"<td[^>]*>.*?</td>",
                                           _section(built.html, "pvalues"), re.S), strict=True):
        assert ('class="sig"' in td and "<b>" in td) == (rec["p_adjusted"] <= 0.05)
    assert htmlmod.escape(table.caption("html")) in built.html
    for line in table.summary_lines():
        assert htmlmod.escape(line) in built.html


def test_kendall_table_shows_abs_tau_and_signs(built: Built) -> None:
    with StudyStore(built.study, create=False) as store:
        finished = [r for r in store.results() if r["status"] == "finished"]
    table = kendall_table(finished)
    shown = _cells(_section(built.html, "kendall"))
    expected = [[f"{abs(r[c]):.3f}"] for r in table.to_rows()
                for c in ("sparse_loss", "sparse_acc", "dense_loss", "dense_acc")]
    assert shown == expected
    signed = _section(built.html, "kendall-signed")
    assert f"{table.cell('egf2', 'sparse', 'test_loss').tau:+.3f}" in signed


def test_summary_counts_versions_and_statistics(built: Built) -> None:
    page = built.html
    assert "48 in the plan: 48 finished, 0 failed" in page
    assert "mnist1d" in page and "torch" in page and f"sparseflow {__version__}" in page
    assert "sparse 40; dense 8, 16" in page
    assert "wilcoxon, one-sided" in page and "correction none" in page


def test_palette_is_fixed_by_spec_position() -> None:
    assert value_colors(["NR", "BN"]) == {"NR": PALETTE[0], "BN": PALETTE[1]}
    assert value_colors(["BN", "NR"])["BN"] == PALETTE[0]  # position in the spec, not the name
    assert color_at(len(PALETTE)) == color_at(0) and len(set(PALETTE)) == len(PALETTE)
    with pytest.raises(ValueError):
        color_at(-1)


def test_figures_use_one_colour_per_variant_and_the_paper_markers(study_dir: Path) -> None:
    study = load_study(study_dir)
    colors = value_colors(study.axes["variant"])
    for metric in ("test_accuracy", "egf2"):
        data = width_figure(study, metric, "optim.name", "variant", colors, name="f",
                            title="t")
        fig = draw(data)
        axes = [ax for ax in fig.axes if ax.get_visible()]
        assert [ax.get_title() for ax in axes] == ["optim.name = adam", "optim.name = sgd"]
        for ax in axes:
            lines = [ln for ln in ax.get_lines() if len(ln.get_xdata()) > 0
                     and ln.get_marker() in ("o", "x")]
            assert len(lines) == 4  # NR/BN × dense/sparse
            for line in lines:
                assert to_hex(line.get_color()) in (colors["NR"], colors["BN"])
                assert (line.get_marker(), line.get_linestyle()) in (("o", "-"), ("x", "--"))
        assert (axes[0].get_yscale() == "log") == (metric == "egf2")
        assert list(axes[0].get_xticks()) == [8, 16]


def test_cell_option_picks_the_training_curves(study_dir: Path, tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "r.html"
    code, _, err = _run(["study", "report", str(study_dir), "--out", str(out), "--cell",
                         "variant=BN", "--cell", "optim.name=sgd", "--metric", "test_loss"],
                        capsys)
    assert code == 0, err
    page = out.read_text()
    assert "optim.name = sgd, variant = BN at dense width W_D = 16" in page
    assert "H1: sparse &lt; dense on test_loss" in page  # a loss: lower is better
    assert page.count(IMG) == len(FIGURES)
    # figures beside the named page, never in (or over) the default report's folder
    assert (tmp_path / "r_files" / "test_loss_vs_width.pdf").exists()
    assert 'href="r_files/test_loss_difference.png"' in page
    assert not (study_dir / "report" / "test_loss_vs_width.png").exists()


def test_metric_egf2_draws_each_figure_once_and_out_isolates_figures(
        built: Built, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    default = built.study / "report"
    before = {p.name: p.read_bytes() for p in default.iterdir()}
    out = tmp_path / "elsewhere" / "x.html"
    out.parent.mkdir()
    code, _, err = _run(["study", "report", str(built.study), "--out", str(out),
                         "--metric", "egf2"], capsys)
    assert code == 0, err
    page = out.read_text()
    ids = re.findall(r'<figure id="([^"]+)"', page)
    assert ids == ["egf2_vs_width", "egf2_difference", "curves_grid", "curves",
                   "egf2_training", "egf2_per_layer", "kendall_by_width"]
    assert page.count(IMG) == len(ids)
    assert page.count("against dense width</h2>") == 1  # one section for egf2_vs_width
    written = sorted(p.name for p in (tmp_path / "elsewhere" / "x_files").iterdir())
    assert written == sorted(f"{i}{s}" for i in ids for s in (".png", *PDF_WIDTHS))
    # the default report's files are untouched, byte for byte
    assert {p.name: p.read_bytes() for p in default.iterdir()} == before


@pytest.mark.parametrize("args,needle", [
    (["--cell", "nope=1"], "unknown --cell key 'nope'"),
    (["--cell", "variant=XX"], "values: NR, BN"),
    (["--cell", "variant"], "KEY=VALUE"),
    (["--rows", "optim.lr"], "not a swept axis"),
    (["--metric", "accuracy"], "unknown --metric 'accuracy'"),
    (["--test", "z"], "--test must be one of"),
])
def test_bad_options_exit_2_with_one_line(study_dir: Path, tmp_path: Path, args: list[str],
                                          needle: str, capsys: pytest.CaptureFixture[str]
                                          ) -> None:
    code, _, err = _run(["study", "report", str(study_dir), "--out",
                         str(tmp_path / "r.html"), *args], capsys)
    _assert_one_line_error(code, err, needle)
    assert not (tmp_path / "r.html").exists()


def test_no_study_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = _run(["study", "report", str(tmp_path)], capsys)
    _assert_one_line_error(code, err, "no study at")
    assert not (tmp_path / "report").exists()


def test_no_finished_runs_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with StudyStore(tmp_path) as store:
        store.init_study("empty", spec_dict(), "f" * 16)
        store.add_planned([PlannedRun("abc-s0", "abc", 0, "dense", 40, 8,
                                      {"optim.name": "adam", "variant": "NR"}, {})])
    code, _, err = _run(["study", "report", str(tmp_path)], capsys)
    _assert_one_line_error(code, err, "no finished runs")


def _chromium() -> str | None:
    return next((p for p in map(shutil.which, ("chromium", "chromium-browser")) if p), None)


def test_page_renders_in_headless_chromium(built: Built, tmp_path: Path) -> None:
    exe = _chromium()
    if exe is None:
        pytest.skip("chromium not installed: apt-get install chromium")
    url = (built.study / "report" / "report.html").resolve().as_uri()
    # No network, no first-run or update work: the page must render from the file alone.
    cmd = [exe, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
           "--disable-component-update", "--disable-sync", "--no-first-run",
           "--hide-scrollbars", f"--user-data-dir={tmp_path / 'profile'}"]
    dom = subprocess.run([*cmd, "--dump-dom", url], capture_output=True, text=True,
                         timeout=120, check=True).stdout
    assert dom.count(IMG) == len(FIGURES) and "Kendall" in dom and "</html>" in dom
    shot = tmp_path / "shot.png"
    subprocess.run([*cmd, f"--screenshot={shot}", "--window-size=1280,4400", url],
                   capture_output=True, timeout=120, check=True)
    assert shot.read_bytes().startswith(PNG_MAGIC)
    pixels = mpimg.imread(shot)[..., :3]  # floats in [0, 1]
    assert pixels.shape[:2] == (4400, 1280) and pixels.std() > 0.05
    # The palette's first two colours appear only inside the figures (the page's CSS never
    # uses them), so finding them proves the embedded images were decoded and drawn.
    for color in (PALETTE[0], PALETTE[1]):
        near = np.abs(pixels - np.array(to_rgb(color))).max(axis=-1) < 0.03
        assert near.sum() > 500, f"{color} not found in the screenshot"
