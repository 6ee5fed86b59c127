"""The revision graph's heads: Alembic's answer, read from the files when that is sure.

There is one answer for "which revisions does this code have, and which are its heads":
Alembic's `ScriptDirectory`. `make migrate` on a database already at head needs only
that answer and one query, and loading Alembic (with SQLAlchemy) costs about half a
second, more than the rest of such a run. So `graph()` first reads the configuration as
Alembic's `Config` does (alembic.ini's [alembic], then [tool.alembic] of pyproject.toml;
`%(here)s`; `version_locations` split on `path_separator`; `recursive_version_locations`)
and the revision files' `revision = ...` / `down_revision = ...` literals, without
importing them. Whenever it is unsure (a package-resource location, `sourceless`, a
revision id that is not a literal, a duplicate, a down revision it cannot find, an
unreadable file) it asks `ScriptDirectory`. tests/test_heads.py holds both answers equal
in every layout Alembic supports.
"""

from __future__ import annotations

import ast
import configparser
import os
import re
import threading
import tomllib
from pathlib import Path

from neon_migrate.errors import ConfigError, MigrationError

Graph = tuple[frozenset[str], tuple[str, ...]]  # every revision id, the heads (sorted)

_PARSING = threading.Lock()
_REVISION_FILE = re.compile(r"(?!\.\#|__init__)(.*\.py)$")  # Alembic's own rule, not sourceless
_LEGACY_SPLIT = re.compile(r", *|(?: +)")  # version_locations without a path_separator
_IDS = ("revision", "down_revision")
_SEPARATORS = {"space": " ", "newline": "\n", "os": os.pathsep, ":": ":", ";": ";"}


class _Unsure(Exception):
    """The fast reader cannot be sure to give Alembic's answer: ask Alembic."""


def graph(ini: Path | None = None, toml: Path | None = None) -> Graph:
    """Every revision id and the heads, as `ScriptDirectory` gives them.

    `ini` and `toml` default to the files the `alembic` command would read."""
    if ini is None and toml is None:
        from neon_migrate import project

        ini, toml = project.config_files()
    try:
        return quick_graph(ini, toml)
    except _Unsure:
        return alembic_graph(ini, toml)


def alembic_graph(ini: Path | None, toml: Path | None) -> Graph:
    """Alembic's own answer (imports Alembic and every revision file)."""
    from alembic.config import Config
    from alembic.script import ScriptDirectory
    from alembic.util import CommandError

    from neon_migrate.project import refuse_no_configuration

    refuse_no_configuration(ini, toml)
    try:
        script = ScriptDirectory.from_config(Config(file_=ini, toml_file=toml))
        known = frozenset(s.revision for s in script.walk_revisions())
        return known, tuple(sorted(script.get_heads()))
    except CommandError as exc:
        raise ConfigError(
            f"the revision scripts cannot be read: {' '.join(str(exc).split())}",
            "fix script_location / version_locations, or the revision file it names",
        ) from None


def quick_graph(ini: Path | None, toml: Path | None) -> Graph:
    """The same answer from the files alone; raises _Unsure when it might differ."""
    folders, recursive = _version_folders(_Options(ini, toml))
    revisions: dict[str, object] = {}
    seen: set[Path] = set()
    for path in _revision_files(folders, recursive):
        if path.resolve() in seen:  # Alembic loads a file named twice once
            continue
        seen.add(path.resolve())
        revision, down = _literals(path)
        if revision in revisions:
            raise _Unsure  # Alembic warns and keeps one of them
        revisions[revision] = down
    parents = set()
    for down in revisions.values():
        downs = (down,) if isinstance(down, str) else tuple(down or ())
        if not all(isinstance(d, str) and d in revisions for d in downs):
            raise _Unsure  # a branch label, or a revision that is not there
        parents.update(downs)
    heads = set(revisions) - parents
    if not heads or _unreachable(revisions, heads):
        raise _Unsure  # no revisions at all, or a cycle: Alembic says what it makes of it
    return frozenset(revisions), tuple(sorted(heads))


def _unreachable(revisions: dict[str, object], heads: set[str]) -> bool:
    """Whether some revision is not below any head (only a cycle does that)."""
    seen, todo = set(), list(heads)
    while todo:
        rev = todo.pop()
        if rev not in seen:
            seen.add(rev)
            down = revisions[rev]
            todo.extend((down,) if isinstance(down, str) else (down or ()))
    return len(seen) != len(revisions)


class _Options:
    """alembic.ini's [alembic] first, then [tool.alembic]: as `Config.get_alembic_option`."""

    def __init__(self, ini: Path | None, toml: Path | None) -> None:
        here = ini.absolute().parent.as_posix() if ini else Path().as_posix()
        self.ini = configparser.ConfigParser(defaults={"here": here})
        try:
            if ini is not None:
                self.ini.read(ini, encoding="utf-8")
            self.toml = {}
            if toml is not None and toml.exists():
                with open(toml, "rb") as handle:
                    self.toml = tomllib.load(handle).get("tool", {}).get("alembic", {})
        except (configparser.Error, tomllib.TOMLDecodeError, OSError, UnicodeError):
            raise _Unsure from None
        if not isinstance(self.toml, dict):
            raise _Unsure
        self.toml_here = {"here": toml.absolute().parent.as_posix()} if toml else {}

    def in_ini(self, name: str) -> bool:
        return self.ini.has_section("alembic") and self.ini.has_option("alembic", name)

    def ini_value(self, name: str) -> str | None:
        try:
            return self.ini.get("alembic", name) if self.in_ini(name) else None
        except configparser.Error:
            raise _Unsure from None

    def toml_value(self, name: str):
        value = self.toml.get(name)
        try:
            if isinstance(value, str):
                return value % self.toml_here
            if isinstance(value, list) and all(isinstance(v, str) for v in value):
                return [v % self.toml_here for v in value]
        except (TypeError, ValueError, KeyError):
            raise _Unsure from None
        if value is not None:
            raise _Unsure
        return None

    def get(self, name: str):
        return self.ini_value(name) if self.in_ini(name) else self.toml_value(name)

    def flag(self, name: str) -> bool:
        if self.in_ini(name):
            return self.ini_value(name) == "true"
        value = self.toml.get(name, False)
        if not isinstance(value, bool):
            raise _Unsure  # Alembic refuses it: let it say so
        return value

    def version_locations(self) -> list[str] | None:
        given = self.ini_value("version_locations")
        if given:
            for name in ("path_separator", "version_path_separator"):
                separator = self.ini_value(name)
                if separator is not None:
                    if separator not in _SEPARATORS:
                        raise _Unsure
                    split = _SEPARATORS[separator]
                    return [part.strip() for part in given.split(split) if part]
            return _LEGACY_SPLIT.split(given)
        value = self.toml_value("version_locations")
        if value is not None and not isinstance(value, list):
            raise _Unsure
        return value


def _local_path(location: str) -> Path:
    """A location as a path; a `package:folder` resource is Alembic's to find."""
    if not os.path.isabs(location) and ":" in location:
        raise _Unsure
    return Path(location)


def _version_folders(options: _Options) -> tuple[list[Path], bool]:
    script_location = options.get("script_location")
    if not isinstance(script_location, str) or options.flag("sourceless"):
        raise _Unsure
    script_dir = _local_path(script_location)
    if not script_dir.exists():
        raise _Unsure  # Alembic's error names it
    locations = options.version_locations()
    if locations:
        folders = [_local_path(location).absolute() for location in locations]
    else:
        folders = [(script_dir / "versions").absolute()]
    return [f for f in folders if f.exists()], options.flag("recursive_version_locations")


def _revision_files(folders: list[Path], recursive: bool) -> list[Path]:
    """The files Alembic reads as revisions, walking folders as its ScriptDirectory does."""
    paths = []
    for folder in folders:
        for root, dirs, files in os.walk(folder):
            if root.endswith("__pycache__"):
                continue
            paths.extend(Path(root, name) for name in sorted(files) if _REVISION_FILE.match(name))
            if not recursive:
                break
            dirs.sort()
    return paths


def script_files(script) -> list[Path]:
    """The revision files of an Alembic ScriptDirectory, in all its version locations."""
    folders = [Path(p) for p in script.version_locations] or [Path(script.dir, "versions")]
    existing = [folder.absolute() for folder in folders if folder.exists()]
    return _revision_files(existing, script.recursive_version_locations)


def _literals(path: Path) -> tuple[str, object]:
    """Module-level `revision` and `down_revision`, if they are plain literals set once."""
    try:
        with _PARSING:  # CPython 3.11 can fail ast.parse run in two threads at once
            tree = ast.parse(path.read_bytes())
    except (OSError, SyntaxError, ValueError):
        raise _Unsure from None
    found: dict[str, object] = {}
    for node in tree.body:
        target = node.targets[0] if isinstance(node, ast.Assign) else getattr(node, "target", None)
        simple = isinstance(node, ast.Assign | ast.AnnAssign) and isinstance(target, ast.Name)
        if not simple:
            if _sets_ids(node):  # in an `if`, a loop, a tuple: only running it tells
                raise _Unsure
            continue
        if target.id in _IDS:
            if len(getattr(node, "targets", ())) > 1 or node.value is None:
                raise _Unsure
            try:
                found[target.id] = ast.literal_eval(node.value)
            except ValueError:
                raise _Unsure from None
    revision = found.get("revision")
    if not isinstance(revision, str):
        raise _Unsure
    return revision, found.get("down_revision")


def _sets_ids(statement: ast.stmt) -> bool:
    """Whether a statement assigns `revision` or `down_revision` at module level."""
    todo: list[ast.AST] = [statement]
    while todo:
        node = todo.pop()
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef | ast.Lambda):
            continue  # their own scope
        if isinstance(node, ast.Name) and node.id in _IDS and isinstance(node.ctx, ast.Store):
            return True
        if isinstance(node, ast.alias) and (node.asname or node.name) in _IDS:
            return True
        todo.extend(ast.iter_child_nodes(node))
    return False


def one_database_head(current: tuple[str, ...] | list[str]) -> str | None:
    """The database's one revision (None: empty); refuses a database stamped with several.

    Every command that plans from the database's revision goes through here."""
    if len(current) > 1:
        raise MigrationError(
            f"the database has {len(current)} heads ({', '.join(current)})",
            "merge them with `alembic merge heads -m merge`, then migrate",
        )
    return current[0] if current else None


def refuse_unknown(current: tuple[str, ...] | list[str], known: frozenset[str] | set[str]) -> None:
    """A database stamped with a revision these scripts do not define: say what that
    means (as `status` does) instead of Alembic's bare "Can't locate revision"."""
    unknown = [revision for revision in current if revision not in known]
    if unknown:
        raise unknown_revision_error(unknown)


def unknown_revision_error(unknown: list[str]) -> MigrationError:
    return MigrationError(
        f"the database is at {', '.join(unknown)}, which no revision file here defines (a "
        "deleted file, or a database migrated from another branch or a newer build)",
        "deploy the code that has that revision, or check that DATABASE_URL names the "
        "right database (`neon-migrate status` lists what it holds)",
    )
