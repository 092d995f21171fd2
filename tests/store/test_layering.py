"""The layering the house style promises, checked on the source: the store writes SQL and decides nothing, so it
imports no stage above it; the pure policies (routing, alert signals and state) import neither the store nor
anything doing I/O."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

MONITOR = Path(__file__).resolve().parents[2] / "monitor"
STAGES = ("monitor.ingest", "monitor.metrics", "monitor.alerts", "monitor.routing", "monitor.reconcile")
#: Imports allowed despite the rule, each with the reason it is still there.
EXCEPTIONS: set[tuple[str, str]] = set()


def imports(path: Path) -> set[str]:
    """Every module ``path`` imports, at any depth (a function-level import counts too)."""
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module:
            out.add(node.module)
        elif isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
    return out


def below(module: str, packages: tuple[str, ...]) -> bool:
    return any(module == p or module.startswith(p + ".") for p in packages)


@pytest.mark.parametrize("path", sorted((MONITOR / "store").rglob("*.py")), ids=lambda p: p.name)
def test_the_store_imports_no_stage(path: Path) -> None:
    rel = path.relative_to(MONITOR).as_posix()
    bad = {m for m in imports(path) if below(m, STAGES) and (rel, m) not in EXCEPTIONS}
    assert bad == set()


@pytest.mark.parametrize("name", ["routing/policy.py", "alerts/signals.py", "alerts/lifecycle.py",
                                  "alerts/muting.py", "alerts/detectors.py", "alerts/evaluate.py",
                                  "routing/plan.py", "reconcile/lost.py"])
def test_pure_policies_import_no_store_and_no_io(name: str) -> None:
    io = ("monitor.store", "sqlalchemy", "httpx", "monitor.probes", "monitor.ingest", "monitor.alerts.dispatch",
          "monitor.routing.yaml_file", "socket", "urllib.request", "telegram")
    assert {m for m in imports(MONITOR / name) if below(m, io)} == set()
