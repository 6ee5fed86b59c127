"""The targets file: which databases a fleet run migrates, and where their URLs come from.

    [[target]]
    name = "tenant-a"
    url_env = "TENANT_A_DATABASE_URL"            # its direct URL, from the environment
    pooled_url_env = "TENANT_A_POOLED_URL"       # optional: the app's door, verified too

or a `[neon]` table whose branches become targets (neon.py). The file names environment
variables, never URLs, so it can be committed while the secrets stay in the CI's or the
cluster's secret store. A mistake is one line naming the file's line (tomllib gives it for
syntax; for the rest it is found in the text), and every run refuses before starting if
two targets are the same database: one process would only wait for the other's lock and
the report would count it twice.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from neon_migrate.errors import ConfigError

ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
TARGET_KEYS = {"name", "url_env", "pooled_url_env"}
EXAMPLES = {
    "url_env": "TENANT_A_URL",
    "pooled_url_env": "TENANT_A_POOLED_URL",
    "project_id_env": "NEON_PROJECT_ID",
    "api_key_env": "NEON_API_KEY",
}
NEON_KEYS = {"project_id_env", "api_key_env", "branches", "database", "role"}


@dataclass(frozen=True)
class Target:
    name: str
    line: int  # where the file declares it (a [neon] branch: the [neon] table's line)
    url_env: str | None = None
    pooled_url_env: str | None = None
    url: str | None = field(default=None, repr=False)  # [neon]: fetched; holds a password
    problem: str | None = None  # [neon]: why no URL could be fetched, said at its turn

    def variables(self, environ: Mapping[str, str]) -> dict[str, str]:
        """What the target's migrate process gets as DATABASE_URL_DIRECT and DATABASE_URL.

        DATABASE_URL is always set, empty when no pooled door is named, so that a `.env`
        file's DATABASE_URL can never pair another database's pooler with this one (an
        empty value counts as unset: on Neon the pooled door is derived from the direct).
        Raises TargetProblem when a variable the file names is not set.
        """
        if self.problem:
            raise TargetProblem(self.problem)
        direct = self.url if self.url is not None else _required(environ, self.url_env, "direct")
        pooled = _required(environ, self.pooled_url_env, "pooled") if self.pooled_url_env else ""
        return {"DATABASE_URL_DIRECT": direct, "DATABASE_URL": pooled}


class TargetProblem(Exception):
    """A target that cannot be run (a variable unset): it fails at its turn, as a failed
    migration would, and the others go on only with --keep-going."""


def _required(environ: Mapping[str, str], name: str | None, door: str) -> str:
    value = environ.get(name or "", "").strip()
    if not value:
        raise TargetProblem(
            f"{name} is not set. Fix: export this database's {door} URL in {name} "
            "(the targets file names the variable)"
        )
    return value


@dataclass(frozen=True)
class NeonSpec:
    """A `[neon]` table: every branch of a project whose name matches `branches`."""

    line: int
    project_id_env: str
    api_key_env: str
    branches: str  # a glob over branch names: "tenant-*"
    database: str
    role: str


@dataclass(frozen=True)
class TargetsFile:
    path: Path
    targets: tuple[Target, ...]
    neon: NeonSpec | None


def read(path: str | Path) -> TargetsFile:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such targets file", "name the file with --targets") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path} cannot be read: {exc}", "give a UTF-8 TOML file") from None
    return parse(text, path)


def parse(text: str, path: Path) -> TargetsFile:
    import tomllib

    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        found = re.search(r"\(at line (\d+), column (\d+)\)", str(exc))
        what = re.sub(r"\s*\(at .*\)$", "", str(exc))
        where = f"line {found[1]}" if found else "at its end"
        column = f" (column {found[2]})" if found else ""
        raise ConfigError(
            f"{path} {where}: not valid TOML: {what}{column}", "fix the line (TOML syntax)"
        ) from None
    lines = _Lines(text)

    def bad(line: int, what: str, fix: str) -> ConfigError:
        return ConfigError(f"{path} line {line}: {what}", fix)

    for key in document:
        if key not in ("target", "neon"):
            raise bad(lines.top(key), f"unknown key {key!r}", "use [[target]] tables or [neon]")
    raw = document.get("target", [])
    if not isinstance(raw, list) or not all(isinstance(t, dict) for t in raw):
        raise bad(
            lines.top("target"),
            "`target` must be [[target]] tables",
            "write each database as a [[target]] table",
        )
    targets: list[Target] = []
    for index, table in enumerate(raw):
        targets.append(_target(table, lines.header("target", index), lines, bad))
    neon = _neon(document["neon"], lines, bad) if "neon" in document else None
    if not targets and neon is None:
        raise bad(1, "no targets", "add a [[target]] table per database, or a [neon] table")
    seen: dict[str, Target] = {}
    for target in targets:
        if target.name in seen:
            raise bad(
                lines.key(target.line, "name"),
                f"target name {target.name!r} is used twice (first on line "
                f"{seen[target.name].line})",
                "give every target its own name",
            )
        seen[target.name] = target
    return TargetsFile(path, tuple(targets), neon)


def _target(table: dict, line: int, lines: _Lines, bad) -> Target:
    for key in table:
        if key not in TARGET_KEYS:
            raise bad(
                lines.key(line, key),
                f"unknown key {key!r} in [[target]]",
                f"use {', '.join(sorted(TARGET_KEYS))}",
            )
    name = table.get("name")
    if not isinstance(name, str) or not name.strip() or not name.isprintable():
        raise bad(
            lines.key(line, "name"),
            "a [[target]] needs a name (a non-empty string)",
            'add name = "tenant-a"',
        )
    for key in ("url_env", "pooled_url_env"):
        if key in table or key == "url_env":
            _env_name(table.get(key), key, lines.key(line, key), bad)
    return Target(name.strip(), line, table["url_env"], table.get("pooled_url_env"))


def _neon(table: object, lines: _Lines, bad) -> NeonSpec:
    line = lines.header("neon", 0)
    if not isinstance(table, dict):
        raise bad(line, "`neon` must be a [neon] table", "see the README's Fleets section")
    for key in table:
        if key not in NEON_KEYS:
            raise bad(
                lines.key(line, key),
                f"unknown key {key!r} in [neon]",
                f"use {', '.join(sorted(NEON_KEYS))}",
            )
    for key in ("project_id_env", "api_key_env"):
        _env_name(table.get(key), key, lines.key(line, key), bad)
    for key, example in (
        ("branches", "tenant-*"),
        ("database", "neondb"),
        ("role", "neondb_owner"),
    ):
        value = table.get(key)
        if not isinstance(value, str) or not value.strip():
            raise bad(
                lines.key(line, key),
                f"[neon] needs {key} (a non-empty string)",
                f'add {key} = "{example}"',
            )
    return NeonSpec(
        line,
        table["project_id_env"],
        table["api_key_env"],
        table["branches"].strip(),
        table["database"],
        table["role"],
    )


def _env_name(value: object, key: str, line: int, bad) -> None:
    if isinstance(value, str) and ENV_NAME.fullmatch(value):
        return
    if value is None:
        raise bad(
            line,
            f"{key} is missing (the name of an environment variable)",
            f'add {key} = "{EXAMPLES[key]}"',
        )
    if isinstance(value, str) and ("://" in value or "@" in value or "=" in value):
        # never echoed: it may be a URL with its password
        raise bad(
            line,
            f"{key} holds a connection string, not the name of a variable",
            f'put the value in an environment variable and name it: {key} = "{EXAMPLES[key]}"',
        )
    raise bad(
        line,
        f"{key} must name an environment variable (letters, digits, _)",
        f'write {key} = "{EXAMPLES[key]}"',
    )


class _Lines:
    """Where tables and keys are in the text: tomllib gives values, not positions."""

    HEADER = re.compile(r"^\s*(\[\[?)\s*([A-Za-z0-9_.\-\"' ]+?)\s*\]\]?\s*(#.*)?$")

    def __init__(self, text: str) -> None:
        self.text = text.splitlines()
        self.headers = [
            (n, m[2].strip("\"' "))
            for n, line in enumerate(self.text, 1)
            if (m := self.HEADER.match(line))
        ]

    def header(self, name: str, index: int) -> int:
        found = [n for n, header in self.headers if header == name]
        return found[index] if index < len(found) else self.top(name)

    def top(self, key: str) -> int:
        end = self.headers[0][0] if self.headers else len(self.text) + 1
        return self._find(key, 1, end) or 1

    def key(self, header_line: int, key: str) -> int:
        later = [n for n, _ in self.headers if n > header_line]
        end = later[0] if later else len(self.text) + 1
        return self._find(key, header_line + 1, end) or header_line

    def _find(self, key: str, start: int, end: int) -> int | None:
        pattern = re.compile(rf"^\s*[\"']?{re.escape(key)}[\"']?\s*=")
        for number in range(start, end):
            if pattern.match(self.text[number - 1]):
                return number
        return None


def refuse_duplicates(targets: Sequence[Target], environ: Mapping[str, str], path: Path) -> None:
    """Two targets naming one database (same host, port and database name; a Neon
    endpoint's pooled and direct hosts count as one) are refused before anything runs."""
    seen: dict[tuple, Target] = {}
    for target in targets:
        try:
            key = database_key(target.variables(environ)["DATABASE_URL_DIRECT"])
        except (TargetProblem, ConfigError, ValueError):
            continue  # said at its turn, by the target's own run
        if key in seen:
            first = seen[key]
            raise ConfigError(
                f"{path}: targets {first.name!r} (line {first.line}) and {target.name!r} "
                f"(line {target.line}) are the same database ({key[0]}:{key[1]}/{key[2]})",
                "remove one of them, or point its variable at the database it means",
            )
        seen[key] = target


def database_key(url: str) -> tuple[str, int, str]:
    """(host, port, database) as libpq reads the URL; no user, no password."""
    import psycopg2.extensions

    from neon_migrate.connection import urls

    target = urls.to_target(url)
    parts = psycopg2.extensions.parse_dsn(target.dsn)
    host = (parts.get("host") or "localhost").lower().rstrip(".")
    label, dot, rest = host.partition(".")
    host = label.removesuffix("-pooler") + dot + rest
    database = parts.get("dbname") or parts.get("user") or ""
    return host, target.port, database
