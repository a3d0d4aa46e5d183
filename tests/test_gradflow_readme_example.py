"""The usage example in GradientFlowMonitor's module docstring (the README's) runs as written."""

from __future__ import annotations

import contextlib
import io
import math
import textwrap

import torch

import sparseflow.gradflow.monitor as monitor_module


def example_source() -> str:
    """The indented block after ``Example::`` in the module docstring, dedented."""
    doc = monitor_module.__doc__ or ""
    block = doc.split("Example::\n", 1)[1]
    lines = []
    for line in block.split("\n")[1:]:  # skip the blank line after "Example::"
        if line and not line.startswith("    "):
            break  # first unindented line ends the block
        lines.append(line)
    return textwrap.dedent("\n".join(lines)).strip() + "\n"


def test_example_is_short() -> None:
    source = example_source()
    assert "GradientFlowMonitor(model, mask=mask)" in source
    assert len(source.splitlines()) < 15


def test_example_runs_and_gives_finite_egf() -> None:
    torch.manual_seed(0)
    namespace: dict[str, object] = {}
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(example_source(), "monitor_example", "exec"), namespace)
    mon = namespace["mon"]
    assert len(mon.history) == 5
    for record in mon.history:
        for key in ("egf1", "egf2", "egf1_per_weight", "egf2_per_weight"):
            assert math.isfinite(record[key]) and record[key] > 0
        assert record["egf1"] <= record["gf1_masked"] <= record["gf1"]  # masking removes flow
    assert out.getvalue().startswith("EGF2 last ")
