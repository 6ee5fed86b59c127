"""What is applied and what is pending, when and by whom, and whether applied files changed.

The database's alembic_version decides what is applied (a revision is applied when it is
one of the current heads or an ancestor of one), never the history table alone: a stamp,
stock Alembic, or a restored dump can move alembic_version without a row. The history
(history.py) adds the when, how long and who, and the file's checksum as it ran:
- ok         the file's checksum (sha256, line endings normalised) equals the one
             recorded at its last upgrade
- edited     it differs: the file was changed after it ran (a problem: the database did
             not get what the file now says)
- no record  applied without a row: before the history existed, by stock Alembic, by
             `alembic stamp` (not a problem)
A revision alembic_version names that no file defines is `missing` (a problem).

Reading status takes no lock and changes nothing: a few SELECTs on the direct endpoint.
`history` reads the scripts only (no database).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal

from alembic.script import Script, ScriptDirectory
from sqlalchemy import text
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError

from neon_migrate.connection.connect import connect, driver_message
from neon_migrate.connection.endpoints import get_endpoints
from neon_migrate.connection.engines import get_migration_engine
from neon_migrate.errors import MigrationError
from neon_migrate.migrate.history import HISTORY_TABLE, file_checksum
from neon_migrate.migrate.lock import lock_holder, lock_key
from neon_migrate.project import VersionTable, version_table
from neon_migrate.settings import get_settings

JSON_VERSION = 1

_TABLES = text(
    "SELECT to_regclass(:version_table) IS NOT NULL, "
    f"to_regclass('{HISTORY_TABLE}') IS NOT NULL, "
    # left by a failed (or still running) CREATE INDEX CONCURRENTLY: as verify lists them
    "ARRAY(SELECT i.indexrelid::regclass::text FROM pg_index i JOIN pg_class c "
    "ON c.oid = i.indexrelid JOIN pg_namespace n ON n.oid = c.relnamespace "
    "WHERE NOT i.indisvalid AND n.nspname <> 'pg_catalog' AND n.nspname NOT LIKE 'pg_toast%' "
    "ORDER BY 1)"
)
_VERSIONS = "SELECT version_num FROM {table} ORDER BY 1"
_LAST_ROWS = text(  # each revision's latest row, upgrade or downgrade
    f"""SELECT DISTINCT ON (revision) revision, direction, applied_at, duration_ms, checksum,
               application, host
        FROM {HISTORY_TABLE} ORDER BY revision, applied_at DESC"""
)


@dataclass
class Entry:
    revision: str
    message: str
    state: str | None  # applied | pending | missing; None from `history` (no database)
    down_revisions: tuple[str, ...] = ()
    is_head: bool = False
    path: str | None = None
    applied_at: datetime | None = None  # from the history's last upgrade row
    duration_ms: float | None = None
    applied_by: str | None = None  # application@host
    checksum: str | None = None  # ok | edited | no record (applied revisions only)
    file_sha256: str | None = None
    recorded_sha256: str | None = None

    def as_dict(self) -> dict:
        return {
            "revision": self.revision,
            "message": self.message,
            "state": self.state,
            "down_revisions": list(self.down_revisions),
            "is_head": self.is_head,
            "path": self.path,
            "applied_at": self.applied_at.astimezone(UTC).isoformat() if self.applied_at else None,
            "duration_ms": self.duration_ms,
            "applied_by": self.applied_by,
            "checksum": self.checksum,
            "file_sha256": self.file_sha256,
            "recorded_sha256": self.recorded_sha256,
        }


@dataclass
class Status:
    revisions: list[Entry]  # oldest first; missing ones (no file) last
    heads: list[str]  # the scripts' heads
    current: list[str] | None = None  # alembic_version's rows; None: no database read
    problems: list[str] = field(default_factory=list)
    running: str | None = None  # who holds the migration lock now, in words
    invalid_indexes: list[str] = field(default_factory=list)  # a failed concurrent build's

    def count(self, **where) -> int:
        return sum(all(getattr(e, k) == v for k, v in where.items()) for e in self.revisions)

    def as_dict(self) -> dict:
        return {
            "version": JSON_VERSION,
            "revisions": [entry.as_dict() for entry in self.revisions],
            "problems": self.problems,
            "current": self.current,
            "heads": self.heads,
            "running": self.running,
            "invalid_indexes": self.invalid_indexes,
        }


# --- reading ------------------------------------------------------------------------------------
def _message(script: Script) -> str:
    return " ".join((script.doc or "").split())


def script_entries(script: ScriptDirectory) -> list[Entry]:
    """Every revision in the scripts, oldest first, no database state."""
    try:
        scripts = list(reversed(list(script.walk_revisions())))
        heads = set(script.get_heads())
    except Exception as exc:  # a down_revision naming no file (one deleted?), a cycle
        raise MigrationError(
            f"the revision graph is broken: {type(exc).__name__}: {' '.join(str(exc).split())}",
            "restore the revision file it names (a revision applied to a database must "
            "keep its file), or fix the down_revision",
        ) from None
    return [
        Entry(
            revision=s.revision,
            message=_message(s),
            state=None,
            down_revisions=_tuple(s.down_revision),
            is_head=s.revision in heads,
            path=s.path,
        )
        for s in scripts
    ]


def _tuple(value: str | tuple[str, ...] | list[str] | None) -> tuple[str, ...]:
    return (value,) if isinstance(value, str) else tuple(value or ())


def _applied(script: ScriptDirectory, current: list[str], known: set[str]) -> set[str]:
    """The revisions alembic_version's rows stand for: each known one and its ancestors.
    Known means an exact id: Alembic would also resolve a unique prefix of one."""
    applied: set[str] = set()
    for head in current:
        if head in known and head not in applied:
            applied.update(s.revision for s in script.iterate_revisions(head, "base"))
    return applied


def _by(application: str | None, host: str | None) -> str | None:
    if application is None and host is None:
        return None
    return f"{application or '?'}@{host}" if host else application


def _ms(value: Decimal | float | None) -> float | None:
    return None if value is None else float(value)


def read_status(
    script: ScriptDirectory, conn: Connection, table: VersionTable | None = None
) -> Status:
    """The status of every revision on `conn` (read-only, no lock); rolls back after."""
    entries = script_entries(script)
    table = table or VersionTable()
    try:
        has_versions, has_history, invalid = conn.execute(
            _TABLES, {"version_table": table.sql}
        ).one()
        versions = text(_VERSIONS.format(table=table.sql))
        current = list(conn.execute(versions).scalars()) if has_versions else []
        last = {row.revision: row for row in conn.execute(_LAST_ROWS)} if has_history else {}
        running = lock_holder(conn, lock_key(table))
    except DBAPIError as exc:
        conn.rollback()  # the caller's connection stays usable
        raise MigrationError(
            f"the database's migration state cannot be read: {driver_message(exc)}",
            f"check the role's rights on {table} and {HISTORY_TABLE} (`make verify`)",
        ) from None
    conn.rollback()
    known = {e.revision for e in entries}
    applied = _applied(script, current, known)
    for entry in entries:
        entry.state = "applied" if entry.revision in applied else "pending"
        if entry.state == "applied":
            entry.file_sha256 = file_checksum(entry.path) if entry.path else None
            _add_record(entry, last.get(entry.revision))
    for revision in current:
        if revision not in known:
            entry = Entry(revision=revision, message="(no revision file)", state="missing")
            _add_record(entry, last.get(revision), compare=False)
            entries.append(entry)
    heads = sorted(e.revision for e in entries if e.is_head)
    status = Status(revisions=entries, heads=heads, current=current, running=running,
                    invalid_indexes=list(invalid))  # fmt: skip
    status.problems = problems(status)
    return status


def _add_record(entry: Entry, row, compare: bool = True) -> None:
    """The latest history row, if it is an upgrade: the run that applied it."""
    if row is None or row.direction != "upgrade":
        entry.checksum = "no record" if compare else None
        return
    entry.applied_at, entry.duration_ms = row.applied_at, _ms(row.duration_ms)
    entry.applied_by = _by(row.application, row.host)
    entry.recorded_sha256 = row.checksum
    if compare:
        if row.checksum is None:
            entry.checksum = "no record"
        else:
            entry.checksum = "ok" if row.checksum == entry.file_sha256 else "edited"


def problems(status: Status) -> list[str]:
    """What `validate` fails on: applied files edited since, applied revisions missing."""
    found = []
    for entry in status.revisions:
        if entry.checksum == "edited":
            when = _when(entry.applied_at)
            found.append(
                f"revision {entry.revision} ({entry.message}) was edited after it was applied"
                f"{f' on {when}' if when else ''}: its file no longer matches what ran "
                "(restore it, and put the change in a new revision)"
            )
        elif entry.state == "missing":
            found.append(
                f"the database is at {entry.revision}, which no revision file defines "
                "(a deleted file, or a database migrated from another branch or a newer "
                "build); which other revisions it includes cannot be told without its file"
            )
    return found


def validate(script: ScriptDirectory, conn: Connection) -> list[str]:
    """The problems (edited applied revisions, missing ones), in words; [] when none."""
    return read_status(script, conn).problems


def status(config) -> Status:
    """`read_status` on a short connection of our own to the direct endpoint."""
    script = ScriptDirectory.from_config(config)
    settings = get_settings()
    conn = connect(
        get_migration_engine(),
        retry_seconds=settings.db_connect_retry_seconds,
        variable=get_endpoints().direct_variable,
        migrations=True,
    )
    try:
        conn.execution_options(postgresql_readonly=True)  # our own connection: BEGIN READ ONLY
        return read_status(script, conn, version_table(config))
    finally:
        conn.close()


def history(config) -> Status:
    """The scripts alone: no database, no dates (`neon-migrate history`)."""
    script = ScriptDirectory.from_config(config)
    entries = script_entries(script)
    return Status(revisions=entries, heads=sorted(e.revision for e in entries if e.is_head))


def exit_code(status: Status) -> int:
    """0 fine (pending revisions are fine), 1 validate problems or an INVALID index."""
    return 1 if status.problems or status.invalid_indexes else 0


# --- rendering ----------------------------------------------------------------------------------
def _when(value: datetime | None) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ") if value else ""


def _took(ms: float | None) -> str:
    if ms is None:
        return ""
    if ms < 0.5:
        return "<1 ms"
    if ms < 1000:
        return f"{ms:.0f} ms"
    if ms < 60_000:
        return f"{ms / 1000:.1f} s"
    return f"{int(ms // 60_000)} min {ms % 60_000 / 1000:.0f} s"


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    """Left-aligned columns, the last one (the message) unpadded."""
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header) - 1)]
    return [
        "  ".join(
            [*(cell.ljust(w) for cell, w in zip(row, widths, strict=False)), row[-1]]
        ).rstrip()
        for row in [header, *rows]
    ]


def render_text(status: Status) -> str:
    rows = [
        [
            e.revision,
            e.state or "",
            _when(e.applied_at) or "-",
            _took(e.duration_ms) or "-",
            e.applied_by or "-",
            e.checksum or "-",
            e.message + (" (head)" if e.is_head else ""),
        ]
        for e in status.revisions
    ]
    header = ["revision", "state", "applied (UTC)", "took", "by", "file", "message"]
    lines = _table(header, rows)
    at = ", ".join(status.current or []) or "no revision (empty)"
    applied, pending = status.count(state="applied"), status.count(state="pending")
    unrecorded = status.count(checksum="no record")
    lines.append(
        f"database at {at}: {applied} applied, {pending} pending"
        + (f" ({unrecorded} applied without a history row)" if unrecorded else "")
    )
    if status.running:
        lines.append(f"a migration is running now (the migration lock is held by {status.running})")
    lines.extend(f"problem: {problem}" for problem in status.problems)
    lines.extend(
        f"problem: index {name} is INVALID (a concurrent build failed, or is running now): "
        f"if no migration runs, DROP INDEX CONCURRENTLY {name}; then migrate again"
        for name in status.invalid_indexes
    )
    return "\n".join(lines)


def render_history(status: Status) -> str:
    rows = [
        [
            e.revision,
            ", ".join(e.down_revisions) or "-",
            e.message + (" (head)" if e.is_head else ""),
        ]
        for e in status.revisions
    ]
    lines = _table(["revision", "revises", "message"], rows)
    lines.append(f"{len(status.revisions)} revision(s), head(s): {', '.join(status.heads) or '-'}")
    return "\n".join(lines)


def to_json(status: Status) -> str:
    return json.dumps(status.as_dict(), indent=2)


def run_status(config, as_json: bool = False, out: Callable[[str], object] = print) -> int:
    """`neon-migrate status [--json]`: 0 fine, 1 a problem (an edited applied revision, a
    missing one). A HarnessError (unreachable: 3, configuration: 2) propagates."""
    result = status(config)
    out(to_json(result) if as_json else render_text(result))
    return exit_code(result)


def run_history(config, as_json: bool = False, out: Callable[[str], object] = print) -> int:
    """`neon-migrate history [--json]`: the scripts, oldest first; needs no database."""
    result = history(config)
    out(to_json(result) if as_json else render_history(result))
    return 0
