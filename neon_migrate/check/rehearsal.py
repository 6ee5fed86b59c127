"""Rehearse the pending revisions on production, bounded, then roll everything back.

The fallback when no Neon branch can be made (no API key, or a PostgreSQL that is not
Neon): inside one transaction on the direct endpoint, the revisions run through our
env.py (so under the lock_timeout and statement_timeout a real run has), and the
transaction is rolled back at once. A schema fingerprint taken before and after proves
nothing changed. The locks the revisions take are held until that rollback, which comes
right after the last stamp (a revision's locks last through the later revisions: it is
one transaction); the models are compared on a branch only, never while they are held.
A revision that controls transactions itself (autocommit_block, a COMMIT, also one hidden
in a multi-statement string) is reported as not rehearsable instead of run.

Production is held for at most `limit` seconds (CHECK_MAX_LOCK_SECONDS): each statement
runs under that statement_timeout, the session ends itself after that long idle in its
transaction (a client gone silent), and a guard on its own session ends the rehearsal
when a lock that blocks the app has been held that long across statements (guard.py).
A cut is reported, with the lock and table, never passed over; a link gone silent is
exit 3 within `limit` + DB_CONNECT_TIMEOUT of the statement that went unanswered.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import event, text
from sqlalchemy.engine import Connection

from neon_migrate import project
from neon_migrate.check.guard import Blocking, LockGuard
from neon_migrate.check.plan import PlannedRevision
from neon_migrate.connection.timeouts import pg_ms
from neon_migrate.connection.waiting import lost_connection
from neon_migrate.errors import HarnessError, UnreachableError
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
    unchanged: bool  # the fingerprint after the rollback equals the one before
    fingerprint: str
    cut: str | None = None  # the revision stopped at the bound (CHECK_MAX_LOCK_SECONDS)
    cut_lock: Blocking | None = None  # the lock it held then, if one blocked the app


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

    metadata = target_metadata(project.alembic_config(config_file))
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


def _controls_transactions(statement: str) -> str | None:
    """The transaction-control statement inside `statement`, if any: each part of a
    multi-statement string is looked at ("UPDATE ...; COMMIT" would make the rest real)."""
    import sqlparse

    for part in sqlparse.split(statement):
        plain = sqlparse.format(part, strip_comments=True).strip()
        if _TRANSACTION_CONTROL.match(plain):
            return plain.split()[0].upper()
    return None


@contextmanager
def _no_transaction_control(conn: Connection) -> Iterator[None]:
    """Refuse, for the rehearsal, anything that would end its transaction: a COMMIT from a
    revision would make the rest of the rehearsal real."""

    def refuse_commit(*_args) -> None:
        raise NotRehearsable("it commits its own transaction")

    def refuse_statement(_conn, _cursor, statement, *_args) -> None:
        control = _controls_transactions(statement)
        if control:
            raise NotRehearsable(f"it runs {control} itself")

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


def rehearse(
    conn: Connection, config_file: str, revisions: list[PlannedRevision], limit: float
) -> Rehearsal:
    """Apply what can be rehearsed in one transaction, compare, roll back, prove it; no
    lock that blocks the app held longer than `limit` seconds (see the module's text)."""
    before, counters = fingerprint(conn), sequences(conn)
    conn.rollback()
    rehearsable = []
    for revision in revisions:
        if not revision.rehearsable:
            break
        rehearsable.append(revision)
    skipped = [r.revision for r in revisions[len(rehearsable) :]]
    error, why, cut, cut_lock = None, None, None, None
    if rehearsable:
        pid = conn.connection.dbapi_connection.info.backend_pid
        idle = _idle_limit(conn, limit)
        with (
            LockGuard(conn.engine, pid, limit) as guard,
            _statement_limit(limit),
            conn.begin() as transaction,
        ):
            config = project.alembic_config(config_file)
            config.attributes.update(connection=conn, configure_logger=False)
            try:
                with _no_transaction_control(conn):
                    command.upgrade(config, rehearsable[-1].revision)
            except Exception as exc:  # whatever a real run would hit
                refusal = _refusal(exc)
                ids = [r.revision for r in revisions]
                if guard.cut is not None or _timed_out(exc):  # stopped at the bound
                    cut, cut_lock = _failed_revision(exc), guard.strongest()
                    rehearsable = rehearsable[: ids.index(cut)] if cut in ids else []
                elif lost_connection(exc):  # not the revision's doing: the network's
                    conn.invalidate()
                    raise _silent(exc, limit) from None
                elif refusal:  # that revision and those after it cannot be rehearsed
                    revision, why = refusal
                    skipped = ids[ids.index(revision) :]
                    rehearsable = rehearsable[: ids.index(revision)]
                else:
                    cause = exc.__cause__  # env.py wraps our errors in CommandError
                    ours = isinstance(cause, HarnessError)
                    error = cause.cause if ours else " ".join(str(exc).split())
            transaction.rollback()
        if guard.cut is not None:  # the guard ended that session: a new one, to compare
            conn.invalidate()
        else:
            idle()
    after, moved = fingerprint(conn), sequences(conn)
    conn.rollback()
    return Rehearsal(
        rehearsed=[r.revision for r in rehearsable],
        skipped=skipped,
        why_skipped=why or ("it uses autocommit_block" if skipped else None),
        sequences_advanced=sorted(n for n, v in moved.items() if counters.get(n) != v),
        error=error,
        unchanged=before == after,
        fingerprint=after,
        cut=cut,
        cut_lock=cut_lock,
    )


def _idle_limit(conn: Connection, limit: float):
    """The session ends itself when its client leaves it idle in the rehearsal's
    transaction for `limit` seconds (a link gone silent), so its locks go with it; set for
    the session, before the transaction begins, as Alembic loads the scripts first. Returns
    what puts the session's own value back."""
    previous = conn.execute(
        text(
            "SELECT current_setting('idle_in_transaction_session_timeout'), "
            "set_config('idle_in_transaction_session_timeout', :idle, false)"
        ),
        {"idle": pg_ms(limit)},
    ).scalar_one()
    conn.commit()

    def restore() -> None:
        conn.execute(
            text("SELECT set_config('idle_in_transaction_session_timeout', :v, false)"),
            {"v": previous},
        )
        conn.commit()

    return restore


@contextmanager
def _statement_limit(limit: float) -> Iterator[None]:
    """Each statement of the rehearsal under statement_timeout = `limit`: env.py sets the
    migration's MIGRATION_STATEMENT_TIMEOUT (and the client's matching deadline) from the
    settings, so the rehearsal, which runs in this process, lowers that value meanwhile."""
    from neon_migrate.settings import get_settings

    settings = get_settings()
    saved = settings.migration_statement_timeout
    settings.migration_statement_timeout = min(saved, limit) if saved else limit
    try:
        yield
    finally:
        settings.migration_statement_timeout = saved


def _timed_out(exc: BaseException) -> bool:
    """statement_timeout cancelled a statement (SQLSTATE 57014 with that reason)."""
    seen: BaseException | None = exc
    while seen is not None:
        orig = getattr(seen, "orig", None) or getattr(seen, "original", None)
        if getattr(orig, "pgcode", None) == "57014" and "timeout" in str(orig):
            return True
        if isinstance(orig, BaseException) and orig is not seen and _timed_out(orig):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def _failed_revision(exc: BaseException) -> str | None:
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, RevisionFailed):
            return seen.revision
        seen = seen.__cause__ or seen.__context__
    return None


def _silent(exc: BaseException, limit: float) -> UnreachableError:
    revision = _failed_revision(exc)
    return UnreachableError(
        "the database stopped answering during the rehearsal"
        + (f" of {revision}" if revision else "")
        + f" (nothing for over {limit:g} s + DB_CONNECT_TIMEOUT)",
        f"the server ends the rehearsal's session, and its locks, within {limit:g} s of "
        "its statement's end; check the network, then run the check again",
    )
