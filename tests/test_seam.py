"""The seam: what a deployed app imports (settings, connection, observe, web) never
imports the tooling (migrate, check, twin, branches, commands, fleet, cli), not even
lazily inside a function. Read from the source with `ast`, so an import that only runs
on some path is caught as surely as one at the top of a module."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "neon_migrate"
RUNTIME = ("connection", "observe", "web")
TOOLING = ("migrate", "check", "twin", "branches", "commands", "fleet", "cli")


def runtime_modules() -> list[Path]:
    found = [PACKAGE / "settings.py"]
    for folder in RUNTIME:
        found += sorted((PACKAGE / folder).rglob("*.py"))
    return found


def imported_names(source: str, module: str) -> list[tuple[int, str]]:
    """Every module name `source` may import, with its line: `import x`, `from x import
    y` (relative ones resolved against `module`, e.g. neon_migrate.web.health), and
    `importlib.import_module("x")` / `__import__("x")` with a literal name."""
    package = module.rsplit(".", 1)[0]
    names = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                parts = parts[: len(parts) - node.level + 1]
                base = ".".join([*parts, base] if base else parts)
            names.append((node.lineno, base))
            names += [(node.lineno, f"{base}.{alias.name}") for alias in node.names]
        elif isinstance(node, ast.Call) and _is_dynamic_import(node.func):
            arg = node.args[0] if node.args else None
            if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                names.append((node.lineno, arg.value))
    return names


def _is_dynamic_import(func: ast.expr) -> bool:
    if isinstance(func, ast.Name):
        return func.id in ("__import__", "import_module")
    return isinstance(func, ast.Attribute) and func.attr == "import_module"


def tooling_imports(source: str, module: str) -> list[str]:
    """The imports of `source` that reach the tooling, as `line: name`."""
    tooling = tuple(f"neon_migrate.{part}" for part in TOOLING)
    return [
        f"{line}: {name}"
        for line, name in imported_names(source, module)
        if name in tooling or name.startswith(tuple(f"{t}." for t in tooling))
    ]


def module_name(path: Path) -> str:
    relative = path.relative_to(PACKAGE.parent).with_suffix("")
    return ".".join(relative.parts)


@pytest.mark.parametrize("path", runtime_modules(), ids=lambda p: module_name(p))
def test_the_app_half_imports_no_tooling(path):
    found = tooling_imports(path.read_text(), module_name(path))
    assert found == [], f"{module_name(path)} imports the tooling: {found}"


def test_the_rule_sees_every_way_of_importing():
    """The check itself can fail: each form below reaches the tooling."""
    source = (
        "import neon_migrate.twin.lifecycle\n"
        "from neon_migrate.migrate.heads import graph\n"
        "from neon_migrate import cli\n"
        "from ..branches import api\n"
        "def later():\n"
        "    from neon_migrate.check import predeploy\n"
        "    import importlib\n"
        "    importlib.import_module('neon_migrate.commands.local')\n"
        "    __import__('neon_migrate.fleet')\n"
        "from neon_migrate.connection import urls\n"  # the app half: allowed
        "from neon_migrate import settings, errors\n"  # allowed
        "from . import probe\n"  # neon_migrate.connection.probe: allowed
    )
    found = tooling_imports(source, "neon_migrate.connection.endpoints")
    assert found == [
        "1: neon_migrate.twin.lifecycle",
        "2: neon_migrate.migrate.heads",
        "2: neon_migrate.migrate.heads.graph",
        "3: neon_migrate.cli",
        "4: neon_migrate.branches",
        "4: neon_migrate.branches.api",
        "6: neon_migrate.check",
        "6: neon_migrate.check.predeploy",
        "8: neon_migrate.commands.local",
        "9: neon_migrate.fleet",
    ], found


def test_every_part_of_the_app_half_is_read():
    names = {module_name(p) for p in runtime_modules()}
    assert {"neon_migrate.settings", "neon_migrate.connection.endpoints",
            "neon_migrate.observe.sizing", "neon_migrate.web.health"} <= names  # fmt: skip
