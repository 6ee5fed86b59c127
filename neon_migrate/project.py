"""A project's configuration, found and read the way the `alembic` command finds it.

`neon-migrate migrate` and a plain `alembic upgrade head` must read the same files, or
they could migrate from different folders: ALEMBIC_CONFIG or ./alembic.ini, plus
[tool.alembic] in ./pyproject.toml (Alembic 1.16+), or Flask-Migrate's migrations/alembic.ini
when those are absent (the one `flask db` reads). The harness's own options (the models'
`target_metadata`, the app to serve) go in alembic.ini's [alembic] section or in
[tool.neon-migrate] of pyproject.toml; nothing names the example's `app` package.
"""

from __future__ import annotations

import ast
import configparser
import os
import tomllib
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING

from neon_migrate.errors import ConfigError

if TYPE_CHECKING:  # `migrate` at head reads the files without importing Alembic
    from alembic.config import Config

TOOL_SECTION = "neon-migrate"  # [tool.neon-migrate] in pyproject.toml
FLASK_MIGRATE_INI = Path("migrations", "alembic.ini")  # what Flask-Migrate's `flask db` reads
HARNESS_PACKAGE = "neon_migrate.migrate"  # an env.py importing from it runs the harness


def config_files(ini: str | os.PathLike | None = None) -> tuple[Path | None, Path | None]:
    """(alembic.ini, pyproject.toml) as `alembic` picks them; each None if not there.

    With neither ./alembic.ini nor [tool.alembic], Flask-Migrate's migrations/alembic.ini:
    one file that `flask db` and the harness both read, never a second one beside it."""
    named = os.environ.get("ALEMBIC_CONFIG", "")
    if ini is None and Path(named).name == "pyproject.toml":
        return _existing("alembic.ini"), _existing(named)
    toml = _existing("pyproject.toml")
    found = _existing(ini or named or "alembic.ini")
    if found is None and not (ini or named) and not _tool_table(toml, "alembic"):
        found = _existing(FLASK_MIGRATE_INI)
    return found, toml


def _existing(name: str | os.PathLike) -> Path | None:
    path = Path(name)
    return path if path.is_file() else None


def alembic_config(ini: str | os.PathLike | None = None, **kwargs) -> Config:
    """An Alembic Config over the project's files; a clear error when there are none."""
    ini_file, toml_file = config_files(ini)
    if ini is not None and ini_file is None:
        raise ConfigError(f"{ini} not found", "run the command from the project's root folder")
    refuse_no_configuration(ini_file, toml_file)
    from alembic.config import Config

    return Config(file_=ini_file, toml_file=toml_file, **kwargs)


def refuse_no_configuration(ini_file: Path | None, toml_file: Path | None) -> None:
    if ini_file is None and not _tool_table(toml_file, "alembic"):
        raise ConfigError(
            "no Alembic configuration here: neither alembic.ini nor [tool.alembic] in "
            "pyproject.toml",
            "run the command from the project's root folder, set ALEMBIC_CONFIG, or add "
            "the harness with `neon-migrate init`",
        )


def env_py(ini: Path | None, toml: Path | None) -> Path | None:
    """The env.py Alembic will run: `<script_location>/env.py`, with script_location read
    as Alembic reads it (the ini's [alembic] first, then [tool.alembic], `%(here)s` being
    the file's folder, a relative path taken from the current folder). Read without
    importing Alembic (`migrate` at head stays one query); a package resource
    (`package:folder`) is resolved by Alembic itself. None when no script_location is set.
    """
    location = None
    if ini is not None:
        parser = configparser.ConfigParser({"here": ini.absolute().parent.as_posix()})
        try:
            parser.read(ini)
            if parser.has_option("alembic", "script_location"):
                location = parser.get("alembic", "script_location")
        except configparser.Error as exc:
            raise ConfigError(f"{ini} cannot be read: {exc}", "fix the file") from None
    if location is None:
        value = _tool_table(toml, "alembic").get("script_location")
        if value is not None and toml is not None:
            try:
                location = str(value) % {"here": toml.absolute().parent.as_posix()}
            except (KeyError, ValueError, TypeError):
                raise ConfigError(
                    f"script_location = {value!r} in {toml} cannot be read",
                    "write it as a path, %(here)s for the file's folder",
                ) from None
    if not location:
        return None
    if not os.path.isabs(location) and ":" in location:  # Alembic's rule for a resource
        from alembic.util import coerce_resource_to_filename

        return Path(coerce_resource_to_filename(location)) / "env.py"
    return Path(location) / "env.py"


def is_harness_env(path: Path) -> bool:
    """Whether this env.py runs the harness: it imports from neon_migrate.migrate (the
    template does; a team may edit the rest of the file)."""
    try:
        tree = ast.parse(path.read_text())
    except (OSError, SyntaxError, ValueError, UnicodeDecodeError):
        return False
    for node in ast.walk(tree):
        names = []
        if isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        elif isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        if any(name == HARNESS_PACKAGE or name.startswith(HARNESS_PACKAGE + ".") for name in names):
            return True
    return False


def require_harness_env(ini: Path | None = None, toml: Path | None = None) -> None:
    """Stop, in one line, when the env.py Alembic will run is not the harness's.

    Everything the harness promises (the direct endpoint, the lock, the timeouts, the
    read-back) happens in env.py: a command run through another env.py would report
    success with none of it, so no command runs through one."""
    if ini is None and toml is None:
        ini, toml = config_files()
    if ini is None and not _tool_table(toml, "alembic"):
        return  # nothing configured: the command's own error says what to do
    path = env_py(ini, toml)
    if path is None:
        raise ConfigError(
            f"no script_location in {ini or toml}: Alembic does not know where the migrations are",
            "run `neon-migrate init` (it sets script_location and adds the harness's env.py)",
        )
    if not path.is_file():
        raise ConfigError(
            f"{path} does not exist: script_location in {ini or toml} names a folder "
            "without env.py",
            "run `neon-migrate init`, or point script_location at the migrations' folder",
        )
    if not is_harness_env(path):
        raise ConfigError(
            f"{path} is not neon-migrate's env.py (it imports nothing from "
            f"{HARNESS_PACKAGE}): Alembic would run it without the harness's lock, "
            "timeouts or read-back",
            "run `neon-migrate init`: it keeps that file beside it as "
            "env.py.before-neon-migrate and puts the harness's env.py in its place",
        )


def unloadable_module_fix(config: Config, error: Exception) -> str | None:
    """The fix when the models' package is in the project but not importable: Alembic puts
    the project's folder on sys.path only with prepend_sys_path."""
    top = (getattr(error, "name", None) or "").split(".")[0]
    folder = root(config)
    if not isinstance(error, ModuleNotFoundError) or "." in (error.name or "."):
        return None
    if not ((folder / top).is_dir() or (folder / f"{top}.py").is_file()):
        return None
    ini = config.config_file_name
    if ini and Path(ini).is_file():
        rel = os.path.relpath(folder, Path(ini).resolve().parent)
        value = (
            "."
            if folder == Path.cwd().resolve()
            else "%(here)s" + ("" if rel == "." else f"/{rel}")
        )
        return (
            f"add `prepend_sys_path = {value}` to the [alembic] section of {ini} (Alembic "
            f"puts {folder} on sys.path only with it)"
        )
    return (
        f'add `prepend_sys_path = ["."]` to [tool.alembic] in {where(config)} (Alembic puts '
        f"{folder} on sys.path only with it)"
    )


def option(config: Config, name: str) -> str | None:
    """One of the harness's options: alembic.ini's [alembic] first, then [tool.neon-migrate]."""
    ini = config.config_file_name  # the alembic command names alembic.ini even if absent
    value = config.get_main_option(name) if ini and Path(ini).is_file() else None
    if value:
        return value
    toml_value = _tool_table(_toml_path(config), TOOL_SECTION).get(name)
    return str(toml_value) if toml_value else None


@dataclass(frozen=True)
class VersionTable:
    """Where Alembic stamps the revision: `version_table` in `version_table_schema`.

    Two projects sharing a database (or one schema per app) each name their own table;
    every read-back, verify, status and the check read the configured one, and the
    migration lock is derived from it (neon_migrate.migrate.lock.lock_key)."""

    name: str = "alembic_version"
    schema: str | None = None

    @property
    def sql(self) -> str:
        """The table as SQL, quoted: `"alembic_version"`, `"app"."versions"`."""
        quote = lambda part: '"' + part.replace('"', '""') + '"'  # noqa: E731
        return f"{quote(self.schema)}.{quote(self.name)}" if self.schema else quote(self.name)

    def __str__(self) -> str:
        return f"{self.schema}.{self.name}" if self.schema else self.name

    def configure(self) -> dict[str, str | None]:
        """What context.configure() takes."""
        return {"version_table": self.name, "version_table_schema": self.schema}


def version_table(config: Config | None = None) -> VersionTable:
    """The configured version table: from an Alembic Config, or else from the files the
    `alembic` command would read (the app's health check has no Config)."""
    if config is not None:
        name, schema = option(config, "version_table"), option(config, "version_table_schema")
    else:
        ini, toml = config_files()
        name = file_option(ini, toml, "version_table")
        schema = file_option(ini, toml, "version_table_schema")
    return VersionTable(name or "alembic_version", schema or None)


def file_option(ini: Path | None, toml: Path | None, name: str) -> str | None:
    """`option()` read from the files alone: [alembic] of alembic.ini, then [tool.neon-migrate]."""
    if ini is not None:
        parser = configparser.ConfigParser(defaults={"here": str(ini.absolute().parent)})
        try:
            parser.read(ini, encoding="utf-8")
            value = parser.get("alembic", name, fallback=None)
        except configparser.Error as exc:
            raise ConfigError(f"{ini} cannot be read: {exc}", "fix the file") from None
        if value:
            return value
    value = _tool_table(toml, TOOL_SECTION).get(name)
    return str(value) if value else None


def where(config: Config) -> str:
    """The file an option's error should name."""
    return config.config_file_name or config.toml_file_name or "the project's configuration"


def root(config: Config) -> Path:
    """The project's folder: where its configuration lives (the folder above Flask-Migrate's
    migrations/alembic.ini, which sits beside env.py)."""
    name = config.config_file_name or config.toml_file_name
    if not name:
        return Path.cwd()
    path = Path(name).resolve()
    return path.parent.parent if path.parts[-2:] == FLASK_MIGRATE_INI.parts else path.parent


def _toml_path(config: Config) -> Path | None:
    if config.toml_file_name:  # the alembic command names ./pyproject.toml even if absent
        return _existing(config.toml_file_name)
    if config.config_file_name:  # an API caller's Config: pyproject.toml beside its ini
        return _existing(Path(config.config_file_name).parent / "pyproject.toml")
    return None


def has_tool_table(path: Path | None, tool: str) -> bool:
    """Whether pyproject.toml at `path` has a [tool.<tool>] table."""
    return bool(_tool_table(path, tool))


def _tool_table(path: Path | None, tool: str) -> dict:
    if path is None:
        return {}
    return _read_toml(str(path.resolve()), path.stat().st_mtime_ns).get("tool", {}).get(tool, {})


@cache
def _read_toml(path: str, _mtime: int) -> dict:
    try:
        with open(path, "rb") as handle:
            return tomllib.load(handle)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path} is not valid TOML: {exc}", "fix the file") from None
