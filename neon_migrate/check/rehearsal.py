"""Rehearse the pending revisions on the real database, then roll everything back.

Inside one transaction on the direct endpoint, the revisions run through our env.py (so
with the lock and timeouts a real run has), the models are compared with the resulting
schema, and the transaction is rolled back. A schema fingerprint taken before and after
proves nothing changed. A revision that commits mid-way (autocommit_block) cannot be
rehearsed this way: the rehearsal stops before it and says so.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from sqlalchemy import event, text
from sqlalchemy.engine import Connection

from neon_migrate.check.plan import PlannedRevision
from neon_migrate.errors import HarnessError
from neon_migrate.migrate.environment import target_metadata
from neon_migrate.migrate.progress import RevisionFailed

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
    skipped: list[str]  # not rehearsable (controls transactions) and everything after
    why_skipped: str | None
    sequences_advanced: list[str]  # sequences never roll back: inserts move them for good
    error: str | None  # what a real run would hit
    drift: list[str] | None  # models vs schema after the rehearsed revisions (None: no models)
    unchanged: bool  # the fingerprint after the rollback equals the one before
    fingerprint: str


def fingerprint(conn: Connection) -> str:
    return conn.execute(FINGERPRINT).scalar_one()


def sequences(conn: Connection) -> dict[str, int | None]:
    rows = conn.execute(
        text("SELECT schemaname || '.' || sequencename, last_value FROM pg_sequences")
    ).all()
    return dict(rows)


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


def drift(conn: Connection, config_file: str) -> list[str] | None:
    """How the database differs from the models (`alembic check` semantics); None when no
    models are configured (no target_metadata in alembic.ini), so nothing was compared."""
    from neon_migrate.migrate.autogenerate import autogenerate_options

    metadata = target_metadata(Config(config_file))
    if metadata is None:
        return None
    options = {"compare_type": True, "compare_server_default": True, **autogenerate_options()}
    context = MigrationContext.configure(conn, opts=options)  # as `alembic check` compares
    return describe_diff(compare_metadata(context, metadata))


class NotRehearsable(Exception):
    """A revision that controls transactions itself cannot run inside the rehearsal's one."""


_TRANSACTION_CONTROL = re.compile(
    r"^\s*(COMMIT|END|ROLLBACK|ABORT|BEGIN|START\s+TRANSACTION)\b", re.IGNORECASE
)


@contextmanager
def _no_transaction_control(conn: Connection) -> Iterator[None]:
    """Refuse, for the rehearsal, anything that would end its transaction: a COMMIT from a
    revision would make the rest of the rehearsal real."""

    def refuse_commit(*_args) -> None:
        raise NotRehearsable("it commits its own transaction")

    def refuse_statement(_conn, _cursor, statement, *_args) -> None:
        if _TRANSACTION_CONTROL.match(statement):
            raise NotRehearsable(f"it runs {statement.split()[0].upper()} itself")

    def refuse_autocommit_block(*_args, **_kwargs):
        raise NotRehearsable("it uses autocommit_block")

    event.listen(conn, "commit", refuse_commit)
    event.listen(conn, "before_cursor_execute", refuse_statement)
    real_block = MigrationContext.autocommit_block
    MigrationContext.autocommit_block = refuse_autocommit_block  # type: ignore[method-assign]
    try:
        yield
    finally:
        MigrationContext.autocommit_block = real_block  # type: ignore[method-assign]
        event.remove(conn, "before_cursor_execute", refuse_statement)
        event.remove(conn, "commit", refuse_commit)


def _refusal(exc: BaseException) -> tuple[str, str] | None:
    """(revision, why) if the rehearsal stopped because a revision controls transactions."""
    failed, seen = None, exc
    while seen is not None:
        if isinstance(seen, RevisionFailed):
            failed = seen
        if isinstance(seen, NotRehearsable) and failed is not None:
            return failed.revision, str(seen)
        seen = seen.__cause__ or seen.__context__ or getattr(seen, "original", None)
    return None


def rehearse(conn: Connection, config_file: str, revisions: list[PlannedRevision]) -> Rehearsal:
    """Apply what can be rehearsed in one transaction, compare, roll back, prove it."""
    before, counters = fingerprint(conn), sequences(conn)
    conn.rollback()
    rehearsable = []
    for revision in revisions:
        if not revision.rehearsable:
            break
        rehearsable.append(revision)
    skipped = [r.revision for r in revisions[len(rehearsable) :]]
    error, differences, why = None, [], None
    if rehearsable:
        with conn.begin() as transaction:
            config = Config(config_file)
            config.attributes.update(connection=conn, configure_logger=False)
            try:
                with _no_transaction_control(conn):
                    command.upgrade(config, rehearsable[-1].revision)
                differences = drift(conn, config_file) if not skipped else []
            except Exception as exc:  # whatever a real run would hit
                refusal = _refusal(exc)
                if refusal:  # that revision and those after it cannot be rehearsed
                    revision, why = refusal
                    ids = [r.revision for r in revisions]
                    skipped = ids[ids.index(revision) :]
                    rehearsable = rehearsable[: ids.index(revision)]
                else:
                    cause = exc.__cause__  # env.py wraps our errors in CommandError
                    ours = isinstance(cause, HarnessError)
                    error = cause.cause if ours else " ".join(str(exc).split())
            transaction.rollback()
    after, moved = fingerprint(conn), sequences(conn)
    conn.rollback()
    return Rehearsal(
        rehearsed=[r.revision for r in rehearsable],
        skipped=skipped,
        why_skipped=why or ("it uses autocommit_block" if skipped else None),
        sequences_advanced=sorted(n for n, v in moved.items() if counters.get(n) != v),
        error=error,
        drift=differences,
        unchanged=before == after,
        fingerprint=after,
    )
