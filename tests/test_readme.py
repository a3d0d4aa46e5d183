"""The README stays true: its config reference is the generated one, its example runs."""

from __future__ import annotations

import contextlib
import io
import math
import re
from pathlib import Path

import torch

import sparseflow  # noqa: F401
from sparseflow.config.reference import markdown, sync_readme
from sparseflow.sparsity import prunable_parameters

README = Path(__file__).resolve().parents[1] / "README.md"


def _block(name: str) -> str:
    text = README.read_text()
    inner = text.split(f"<!-- {name}:start -->", 1)[1].split(f"<!-- {name}:end -->", 1)[0]
    return inner


def test_config_reference_is_generated_one() -> None:
    text = README.read_text()
    assert sync_readme(text) == text, "run: python -m sparseflow.config.reference --write"
    assert "`optim.lr`" in markdown() and "`gradflow.points`" in markdown()


def test_quickstart_has_exactly_two_commands() -> None:
    quick = README.read_text().split("## Quickstart", 1)[1].split("\n## ", 1)[0]
    (code,) = re.findall(r"```bash\n(.*?)```", quick, flags=re.S)
    commands = [ln for ln in code.splitlines() if ln.strip()]
    assert [c.split("#")[0].strip() for c in commands] == ["make demo", "make test"]


def test_monitor_example_runs_under_15_lines() -> None:
    source = re.search(r"```python\n(.*?)```", _block("monitor-example"), flags=re.S).group(1)
    assert len(source.strip().splitlines()) < 15
    torch.manual_seed(0)
    ns: dict[str, object] = {}
    with contextlib.redirect_stdout(io.StringIO()) as out:
        exec(compile(source, "README example", "exec"), ns)
    mon, model, mask = ns["mon"], ns["model"], ns["mask"]
    assert len(mon.history) == 5 and "EGF2 now" in out.getvalue()
    assert all(math.isfinite(h["egf2"]) for h in mon.history)
    # The pruned weights really are zero after training.
    for name, w in prunable_parameters(model).items():
        assert torch.all(w[~mask[name]] == 0)
    # The monitor saw raw gradients: unmasked norm > masked norm.
    assert mon.history[-1]["gf2"] > mon.history[-1]["gf2_masked"]


def test_export_columns_documented() -> None:
    from sparseflow.store.export import COLUMN_DOCS

    block = _block("export-columns")
    for column, meaning in COLUMN_DOCS.items():
        assert f"| `{column}` | {meaning} |" in block, column


def test_builtin_variants_documented() -> None:
    from sparseflow.studies.spec import VARIANTS

    studies = README.read_text().split("## Studies", 1)[1].split("\n## ", 1)[0]
    for name in VARIANTS:
        assert f"| `{name}` |" in studies, name
