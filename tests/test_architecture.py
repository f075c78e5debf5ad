"""The import direction is core ← adapters ← bots, and core never touches a chat platform."""

from __future__ import annotations

import ast
import importlib
import pkgutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

FORBIDDEN = {
    "core": {"adapters", "bots", "slack", "slack_sdk", "slack_bolt", "discord", "rich"},
    "adapters": {"bots"},
}


def imported_roots(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    roots: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            roots.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            roots.add(node.module.split(".")[0])
    return roots


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_import_direction(package: str) -> None:
    offenders = {
        str(path.relative_to(ROOT)): sorted(imported_roots(path) & FORBIDDEN[package])
        for path in sorted((ROOT / package).rglob("*.py"))
    }
    assert {name: bad for name, bad in offenders.items() if bad} == {}


def test_core_modules_import_without_side_effects() -> None:
    """Every core module imports on its own (no config read, no client made at import)."""
    import core

    for module in pkgutil.walk_packages(core.__path__, prefix="core."):
        importlib.import_module(module.name)


def test_no_module_shadows_a_dependency() -> None:
    """Nothing importable from the top (the repository root, or a package's own folder when a
    module in it is run as a script) takes a dependency's name. ``bots.slack`` and
    ``bots.discord`` are subpackages reached only by absolute imports, which never shadow."""
    names = {path.stem for path in ROOT.glob("*/*.py")} | {p.name for p in ROOT.iterdir()}
    assert not names & {"slack", "discord", "httpx2", "rich", "redis", "pydantic"}
