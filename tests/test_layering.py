"""Imports flow downwards only (DESIGN: layers), and analysis never imports train."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[1] / "src" / "sparseflow"

#: Rank of each top-level module/package: a module may import only ranks ≤ its own.
RANK = {
    "_version": 0, "_portable": 0, "errors": 0, "registry": 0, "plugins": 0, "utils": 0,
    "prunable": 0,
    "config": 1, "presets": 1,
    "data": 2, "models": 2, "optim": 2,
    "sparsity": 3,
    "gradflow": 4,
    "scsdc": 5,
    "train": 6,
    "store": 7,
    "analysis": 8, "report": 8,
    "studies": 9,
    "cli": 10, "components": 10, "__init__": 10, "__main__": 10, "integrations": 10,
}
#: Pairs forbidden even though their ranks would allow them.
FORBIDDEN = {("analysis", "train"), ("report", "train")}


def _top(path: Path) -> str:
    rel = path.relative_to(PKG)
    return rel.parts[0] if len(rel.parts) > 1 else rel.stem


def _imports(path: Path) -> set[str]:
    """Top-level sparseflow modules ``path`` imports (at any depth of the file)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        for name in names:
            parts = name.split(".")
            if parts[0] == "sparseflow" and len(parts) > 1:
                found.add(parts[1])
    return found


FILES = sorted(PKG.rglob("*.py"))


def test_every_module_has_a_rank() -> None:
    assert {_top(f) for f in FILES} <= set(RANK)


@pytest.mark.parametrize("path", FILES, ids=lambda p: str(p.relative_to(PKG)))
def test_imports_flow_downwards(path: Path) -> None:
    own = _top(path)
    for dep in _imports(path):
        if dep not in RANK:  # `from sparseflow import gradflow` etc. names a module
            continue
        assert (own, dep) not in FORBIDDEN, f"{own} must never import {dep}"
        if dep != own:
            assert RANK[dep] <= RANK[own], f"{path.name}: {own} (rank {RANK[own]}) imports " \
                                           f"{dep} (rank {RANK[dep]})"
