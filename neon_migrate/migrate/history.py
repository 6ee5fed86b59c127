"""The harness's own record of every revision applied: when, how long, by whom, and the
checksum of the file as it ran. Written in the same transaction as Alembic's stamp.

`record_revision` runs from the `on_version_apply` hook (`keep_stamp`, which calls it before
anything else): Alembic calls that right after it writes the stamp, inside the revision's
transaction, so the row and the stamp commit together (also for a revision that committed
part of its work itself: `keep_stamp` then commits its stamp and this row, together). A
revision whose transaction rolls back leaves no row. Online the table is created once per
run, in the round trip that takes the migration lock (`ENSURE`), never per revision: a
CREATE TABLE IF NOT EXISTS of an existing table raises a NOTICE, which the server flushes
at once, so the reply would leave in two pieces. The INSERT itself travels with the stamp
and the COMMIT (round_trips.py). Offline the same rows are written into the SQL, so a DBA
who applies it with psql records the history too.

Design choices:
- No serial id: a sequence never rolls back, so every pre-deploy rehearsal (which runs
  revisions and rolls back) would move it for good. Rows are ordered by applied_at.
- applied_at is clock_timestamp(), the moment the stamp is written (the revision's work
  done, its COMMIT next), not now(): now() is when the transaction began, which for a
  revision that commits itself midway is that later transaction's start, and in an
  embedding application's single transaction the same instant for every revision.
- The table lives where alembic_version lives (the search_path's first schema), created
  by the same role: no rights beyond those Alembic already needs.
- `alembic stamp` writes no row: it runs nothing, and one stamp step can jump over many
  revisions. `status` decides what is applied from alembic_version alone.
"""

from __future__ import annotations

import functools
import hashlib
import socket
import weakref
from importlib import metadata
from pathlib import Path

from alembic.runtime.migration import MigrationContext, MigrationInfo
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from neon_migrate.connection.connect import driver_message
from neon_migrate.connection.waiting import lost_connection
from neon_migrate.errors import MigrationError
from neon_migrate.migrate import revision_session
from neon_migrate.migrate.progress import APPLIED

HISTORY_TABLE = "neon_migrate_history"  # autogenerate and drift never compare it

CREATE = f"""CREATE TABLE IF NOT EXISTS {HISTORY_TABLE} (
    revision text NOT NULL,
    direction text NOT NULL CHECK (direction IN ('upgrade', 'downgrade')),
    applied_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    duration_ms numeric(12, 1),
    checksum text,
    application text,
    host text,
    harness_version text
)"""
# duration_ms: the revision's function, as progress.py timed it (NULL from offline SQL;
# the server's time for a revision sent as one message: ROW_TIMED_BY_SERVER);
# checksum: file_checksum() of the revision file as it ran; application: the session's
# application_name; host: the machine that ran the harness (NULL from offline SQL).

_INSERT = (
    f"INSERT INTO {HISTORY_TABLE} (revision, direction, duration_ms, checksum, application, "
    "host, harness_version) VALUES ({values})"
)
# Created only when missing: no NOTICE, and no CREATE privilege needed once it exists.
# `:token` as in lock.py: nothing is created through a pooler that drops startup options.
ENSURE = (
    f"DO $$BEGIN IF {{allowed}} AND to_regclass('{HISTORY_TABLE}') IS NULL THEN {CREATE}; "
    "END IF; END$$"
)
ROW = text(  # round_trips.py keeps it, to send it with the COMMIT
    _INSERT.format(
        values=":revision, :direction, :ms, :checksum, current_setting('application_name'), "
        ":host, :version"
    )
)
# A revision sent as one message (fast_path.py): its row travels in that message, so its
# duration is the server's, from the message's arrival (statement_timestamp()) to the row.
ROW_TIMED_BY_SERVER = text(
    _INSERT.format(
        values=":revision, :direction, "
        "round(CAST(extract(epoch FROM clock_timestamp() - statement_timestamp()) * 1000 "
        "AS numeric), 1), :checksum, current_setting('application_name'), :host, :version"
    )
)

_offline_created: weakref.WeakSet[MigrationContext] = weakref.WeakSet()


@functools.cache
def harness_version() -> str:
    try:
        return metadata.version("neon-migrate")
    except metadata.PackageNotFoundError:  # run from a source tree that is not installed
        return "unknown"


def file_checksum(path: str | Path) -> str | None:
    """sha256 (hex) of the file's bytes, line endings as LF and without a UTF-8 BOM: a
    checkout with CRLF (git's autocrlf on Windows) is the same file, not an edited one.
    None when it cannot be read."""
    try:
        data = Path(path).read_bytes()
    except OSError:
        return None
    data = data.removeprefix(b"\xef\xbb\xbf").replace(b"\r\n", b"\n").replace(b"\r", b"\n")
    return hashlib.sha256(data).hexdigest()


def _duration(ctx: MigrationContext, direction: str, revision: str) -> float | None:
    """What progress.py measured for this revision's function: the last entry it appended,
    if it is this revision's (offline, and for a caller's own env.py, there is none)."""
    applied = ctx.config.attributes.get(APPLIED) if ctx.config is not None else None
    if applied and applied[-1][:2] == (direction, revision):
        return round(applied[-1][2], 1)
    return None


def _literal(value: str | None) -> str:
    return "NULL" if value is None else "'" + value.replace("'", "''") + "'"


def record_revision(ctx: MigrationContext, step: MigrationInfo, **_kwargs) -> None:
    """One history row, in the revision's transaction, next to its stamp. Called by the
    on_version_apply hook keep_stamp, before it commits anything."""
    if step.is_stamp or step.up_revision_id is None:
        return
    revision = step.up_revision_id
    direction = "upgrade" if step.is_upgrade else "downgrade"
    script = step.up_revision
    checksum = file_checksum(script.path) if getattr(script, "path", None) else None
    if ctx.as_sql:
        values = ", ".join(
            [
                _literal(revision),
                _literal(direction),
                "NULL",
                _literal(checksum),
                "current_setting('application_name')",
                "NULL",
                _literal(f"{harness_version()} (offline SQL)"),
            ]
        )
        if ctx not in _offline_created:  # once per render, in its first transaction
            _offline_created.add(ctx)
            ctx.impl.static_output(CREATE + ";")
        ctx.impl.static_output(_INSERT.format(values=values) + ";")
        return
    params = {
        "revision": revision,
        "direction": direction,
        "ms": _duration(ctx, direction, revision),
        "checksum": checksum,
        "host": socket.gethostname(),
        "version": harness_version(),
    }
    session = ctx.config.attributes.get(revision_session.ATTRIBUTE) if ctx.config else None
    timing = session.held_timing(revision) if session is not None else None
    if isinstance(timing, float):
        params["ms"] = round(timing, 1)
    try:
        ctx.connection.execute(ROW_TIMED_BY_SERVER if timing == "server" else ROW, params)
    except SQLAlchemyError as exc:
        if lost_connection(exc):  # the run's own handling says what was committed
            raise
        midway = session is not None and session.committed
        raise unwritable(revision, direction, exc, midway) from exc


def unwritable(revision: str, direction: str, exc: BaseException, midway: bool) -> MigrationError:
    """The history row failed (found at once, or in the message that carries the COMMIT)."""
    return MigrationError(
        f"revision {revision} ran, but its row in {HISTORY_TABLE} could not be written "
        f"({driver_message(exc)}), so its {direction} was rolled back"
        + (" except the part it had committed itself" if midway else ""),
        f"give the migration role INSERT on {HISTORY_TABLE} (or let it create the "
        "table), then migrate again",
    )
