"""Rehearse the pending revisions on the real database, then roll everything back.

Inside one transaction on the direct endpoint, the revisions run through our env.py (so
with the lock and timeouts a real run has), the models are compared with the resulting
schema, and the transaction is rolled back. A schema fingerprint taken before and after
proves nothing changed. A revision that commits mid-way (autocommit_block) cannot be
rehearsed this way: the rehearsal stops before it and says so.
"""

from __future__ import annotations

from dataclasses import dataclass

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from sqlalchemy import text
from sqlalchemy.engine import Connection

from app.errors import HarnessError
from app.migrate.environment import target_metadata
from app.migrate.plan import PlannedRevision

FINGERPRINT = text(
    """
    SELECT md5(coalesce(string_agg(item, ',' ORDER BY item), '')) FROM (
        SELECT c.oid::regclass::text || ':' || c.relkind::text || ':' || coalesce(a.attname, '')
               || ':' || coalesce(format_type(a.atttypid, a.atttypmod), '')
               || ':' || coalesce(a.attnotnull::text, '') AS item
        FROM pg_class c
        JOIN pg_namespace n ON n.oid = c.relnamespace
        LEFT JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
        WHERE n.nspname NOT IN ('pg_catalog', 'information_schema')
          AND n.nspname NOT LIKE 'pg_toast%' AND n.nspname NOT LIKE 'pg_temp%'
        UNION ALL
        SELECT conrelid::regclass::text || ':' || conname || ':' || pg_get_constraintdef(oid)
        FROM pg_constraint WHERE connamespace <> 'pg_catalog'::regnamespace
    ) s
    """
)


@dataclass(frozen=True)
class Rehearsal:
    rehearsed: list[str]  # revision ids applied (then rolled back)
    skipped: list[str]  # not rehearsable (autocommit_block) and everything after
    error: str | None  # what a real run would hit
    drift: list[str]  # models vs schema after the rehearsed revisions
    unchanged: bool  # the fingerprint after the rollback equals the one before
    fingerprint: str


def fingerprint(conn: Connection) -> str:
    return conn.execute(FINGERPRINT).scalar_one()


def describe_diff(diff: list) -> list[str]:
    """Alembic's autogenerate diff as short phrases: `add_column account.nickname`."""
    phrases = []
    for item in diff:
        for change in item if isinstance(item, list) else [item]:
            op, *rest = change
            named = [
                getattr(x, "name", x) for x in rest if isinstance(x, str) or hasattr(x, "name")
            ]
            table = getattr(rest[0], "table", None) if rest else None
            if table is not None and op in ("add_index", "remove_index", "add_fk", "remove_fk"):
                named = [table.name, *named]
            phrases.append(f"{op} {'.'.join(str(n) for n in named if n)}".strip())
    return phrases


def drift(conn: Connection) -> list[str]:
    """How the database differs from the models (`alembic check` semantics)."""
    context = MigrationContext.configure(
        conn, opts={"compare_type": True, "compare_server_default": True}
    )
    return describe_diff(compare_metadata(context, target_metadata()))


def rehearse(conn: Connection, config_file: str, revisions: list[PlannedRevision]) -> Rehearsal:
    """Apply what can be rehearsed in one transaction, compare, roll back, prove it."""
    before = fingerprint(conn)
    conn.rollback()
    rehearsable = []
    for revision in revisions:
        if not revision.rehearsable:
            break
        rehearsable.append(revision)
    skipped = [r.revision for r in revisions[len(rehearsable) :]]
    error, differences = None, []
    if rehearsable:
        with conn.begin() as transaction:
            config = Config(config_file)
            config.attributes.update(connection=conn, configure_logger=False)
            try:
                command.upgrade(config, rehearsable[-1].revision)
                differences = drift(conn) if not skipped else []
            except Exception as exc:  # whatever a real run would hit
                cause = exc.__cause__  # env.py wraps our errors in Alembic's CommandError
                error = (
                    cause.cause if isinstance(cause, HarnessError) else " ".join(str(exc).split())
                )
            transaction.rollback()
    after = fingerprint(conn)
    conn.rollback()
    return Rehearsal(
        rehearsed=[r.revision for r in rehearsable],
        skipped=skipped,
        error=error,
        drift=differences,
        unchanged=before == after,
        fingerprint=after,
    )
