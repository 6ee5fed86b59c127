"""A project's configuration, found and read the way the `alembic` command finds it.

`neon-migrate migrate` and a plain `alembic upgrade head` must read the same files, or
they could migrate from different folders: ALEMBIC_CONFIG or ./alembic.ini, plus
[tool.alembic] in ./pyproject.toml (Alembic 1.16+). The harness's own options (the
models' `target_metadata`, the app to serve) go in alembic.ini's [alembic] section or in
[tool.neon-migrate] of pyproject.toml; nothing names the example's `app` package.
"""

from __future__ import annotations

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


def config_files(ini: str | os.PathLike | None = None) -> tuple[Path | None, Path | None]:
    """(alembic.ini, pyproject.toml) as `alembic` picks them; each None if not there."""
    named = os.environ.get("ALEMBIC_CONFIG", "")
    if ini is None and Path(named).name == "pyproject.toml":
        return _existing("alembic.ini"), _existing(named)
    return _existing(ini or named or "alembic.ini"), _existing("pyproject.toml")


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
    """The project's folder: where its configuration lives."""
    name = config.config_file_name or config.toml_file_name
    return Path(name).resolve().parent if name else Path.cwd()


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
