"""The revision graph's heads, read from the revision files without importing anything.

`make migrate` on a database already at head needs only the heads and one query; loading
Alembic to learn the heads would cost more start-up than the rest of the run. Whenever
this reader is unsure (extra version locations, a revision id that is not a literal, an
unreadable file) it answers None, and the caller asks Alembic.
"""

from __future__ import annotations

import ast
import configparser
import threading
from pathlib import Path

_PARSING = threading.Lock()


def _literals(path: Path) -> dict | None:
    """Module-level `revision` and `down_revision` values, if they are plain literals."""
    try:
        with _PARSING:  # CPython 3.11 can fail ast.parse run in two threads at once
            tree = ast.parse(path.read_text())
    except (OSError, SyntaxError, ValueError):
        return None
    found = {}
    for node in tree.body:
        target = node.targets[0] if isinstance(node, ast.Assign) else getattr(node, "target", None)
        if isinstance(target, ast.Name) and target.id in ("revision", "down_revision"):
            try:
                found[target.id] = ast.literal_eval(node.value)
            except ValueError:
                return None
    return found if isinstance(found.get("revision"), str) else None


def revision_files(versions: Path) -> list[Path]:
    """The files Alembic reads as revisions: `*.py` but `__init__*` and editors' `.#*`."""
    return [
        path
        for path in sorted(versions.glob("*.py"))
        if not path.name.startswith(("__init__", ".#"))
    ]


def quick_heads(config_file: Path) -> tuple[str, ...] | None:
    graph = quick_graph(config_file)
    return graph[1] if graph else None


def quick_graph(config_file: Path) -> tuple[frozenset[str], tuple[str, ...]] | None:
    """Every revision id and the heads; None when unsure."""
    # absolute(), not resolve(): Alembic does not follow a symlinked ini either.
    parser = configparser.ConfigParser(defaults={"here": str(config_file.absolute().parent)})
    try:
        parser.read(config_file)
        section = parser["alembic"]
        location = section["script_location"]
        unusual = ("version_locations", "recursive_version_locations", "sourceless")
        if any(section.get(option) for option in unusual):  # .pyc-only revisions, etc.
            return None
    except (configparser.Error, KeyError):
        return None
    revisions, parents = set(), set()
    for path in revision_files(Path(location) / "versions"):
        values = _literals(path)
        if values is None:
            return None
        down = values.get("down_revision")
        revisions.add(values["revision"])
        parents.update([down] if isinstance(down, str) else (down or ()))
    heads = revisions - parents
    return (frozenset(revisions), tuple(sorted(heads))) if heads else None
