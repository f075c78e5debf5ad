"""The import direction is core ← adapters ← bots, core never touches a chat platform, and
nothing installed reaches what is not: ``tests`` (its fakes and ``tests/support``) and ``bench``.

Runtime packages import absolutely. A relative import can never leave its own top-level package
(Python refuses to climb above it), so it could not break the direction; it is forbidden rather
than resolved so that a module is spelled one way everywhere: the checks here read the names as
written (``from .discord import x`` must not pass for the library), and ``grep`` finds every
importer of ``core.engine``.
"""

from __future__ import annotations

import ast
import importlib
import pkgutil
import tomllib
from fnmatch import fnmatch
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

RUNTIME = ("core", "adapters", "bots")
NOT_INSTALLED = {"tests", "bench"}
FORBIDDEN: dict[str, set[str]] = {
    "core": {"adapters", "bots", "slack", "slack_sdk", "slack_bolt", "discord", "rich"},
    "adapters": {"bots"},
    "bots": set(),
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


def relative_imports(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    return [
        f"line {node.lineno}: from {'.' * node.level}{node.module or ''} import ..."
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and node.level > 0
    ]


@pytest.mark.parametrize("package", RUNTIME)
def test_import_direction(package: str) -> None:
    forbidden = FORBIDDEN[package] | NOT_INSTALLED
    offenders = {
        str(path.relative_to(ROOT)): sorted(imported_roots(path) & forbidden)
        for path in sorted((ROOT / package).rglob("*.py"))
    }
    assert {name: bad for name, bad in offenders.items() if bad} == {}


@pytest.mark.parametrize("package", RUNTIME)
def test_runtime_packages_import_absolutely(package: str) -> None:
    offenders = {
        str(path.relative_to(ROOT)): relative_imports(path)
        for path in sorted((ROOT / package).rglob("*.py"))
    }
    assert {name: found for name, found in offenders.items() if found} == {}


def test_the_checks_see_what_they_must(tmp_path: Path) -> None:
    """The readers above, on a module that breaks every rule (imports in a function too)."""
    path = tmp_path / "probe.py"
    path.write_text(
        "import tests.support.clock\nfrom bench.edits import main\n"
        "def f():\n    from . import engine\n    from ..core import sse\n",
        encoding="utf-8",
    )
    assert imported_roots(path) == {"tests", "bench"}
    assert relative_imports(path) == ["line 4: from . import ...", "line 5: from ..core import ..."]


def test_only_the_runtime_packages_are_installed() -> None:
    """pyproject's package patterns pick core, adapters and bots: never tests or bench."""
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    patterns = pyproject["tool"]["setuptools"]["packages"]["find"]["include"]
    folders = {path.name for path in ROOT.iterdir() if path.is_dir()}
    installed = {name for name in folders if any(fnmatch(name, p) for p in patterns)}
    assert installed == set(RUNTIME)


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
    assert not names & {"slack", "discord", "httpx2", "rich", "redis", "pydantic", "mcp"}
