"""The session advisory lock that serializes migration runs, and the session's timeouts.

Alembic takes no lock: two deploys upgrading at once collide on the same DDL. The lock
is session-level because a transaction-level one is released by `autocommit_block`;
that is also why migrations need the direct endpoint, since PgBouncer in transaction mode
gives no session to keep it in. The timeouts are set in the same statement as the first
lock attempt: on Neon every round trip crosses a network.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import text
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError, OperationalError

from app.errors import LockBusyError
from app.settings import Settings

log = logging.getLogger("app.migrate")

# 'neonmigr' as a 64-bit integer. Advisory locks are per database, so one key suffices.
LOCK_KEY = int.from_bytes(b"neonmigr", "big")

_HOLDER = text(
    """
    SELECT a.pid, a.application_name, coalesce(a.client_addr::text, 'local'),
           extract(epoch FROM now() - a.backend_start)::int
    FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
    WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1
      AND l.classid::bigint = :hi AND l.objid::bigint = :lo
      AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
    """
)


def _ms(seconds: float) -> str:
    return f"{round(seconds * 1000)}ms"


def describe_holder(conn: Connection) -> str:
    row = conn.execute(_HOLDER, {"hi": LOCK_KEY >> 32, "lo": LOCK_KEY & 0xFFFFFFFF}).first()
    if row is None:
        return "another session (it has just released it)"
    pid, app, client, age = row
    return f"pid {pid} (application '{app or '?'}', from {client}, connected {age}s ago)"


def _wait_for_lock(conn: Connection, settings: Settings) -> float:
    holder = describe_holder(conn)
    wait = settings.migration_lock_wait
    busy = LockBusyError(
        f"the migration lock is held by {holder} for longer than MIGRATION_LOCK_WAIT={wait:g}s",
        "let that run finish, or stop it with SELECT pg_terminate_backend(<pid>)",
    )
    if wait <= 0:
        raise busy
    log.info("waiting up to %gs for the migration lock held by %s", wait, holder)
    started = time.monotonic()
    conn.execute(
        text(
            "SELECT set_config('lock_timeout', :wait, false), "
            "set_config('statement_timeout', '0', false)"
        ),
        {"wait": _ms(wait)},
    )
    try:
        conn.execute(text("SELECT pg_advisory_lock(:key)"), {"key": LOCK_KEY})
    except OperationalError as exc:
        if getattr(exc.orig, "pgcode", None) != "55P03":  # lock_not_available
            raise
        conn.rollback()
        raise busy from None
    waited = time.monotonic() - started
    log.info("got the migration lock after waiting %.1fs", waited)
    return waited


def _set_timeouts_and_try_lock(conn: Connection, settings: Settings) -> bool:
    return conn.execute(
        text(
            "SELECT set_config('lock_timeout', :lock, false), "
            "set_config('statement_timeout', :stmt, false), pg_try_advisory_lock(:key)"
        ),
        {
            "lock": _ms(settings.migration_lock_timeout),
            "stmt": _ms(settings.migration_statement_timeout),
            "key": LOCK_KEY,
        },
    ).one()[2]


@contextmanager
def migration_lock(conn: Connection, settings: Settings) -> Iterator[None]:
    """Hold the lock, with the migration timeouts set, for the body of the block.

    Ends the transaction our own statements autobegan: Alembic would otherwise take it
    for an external transaction, skip its own BEGIN/COMMIT, and every DDL statement
    would be rolled back when the connection closes. A transaction the caller had
    already opened is theirs, and left alone.
    """
    owns_transaction = not conn.in_transaction()
    if not _set_timeouts_and_try_lock(conn, settings):
        _wait_for_lock(conn, settings)
        _set_timeouts_and_try_lock(conn, settings)  # restore the timeouts; re-entrant lock
        conn.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": LOCK_KEY})
    if owns_transaction:
        conn.commit()
    try:
        yield
    finally:
        _release(conn, owns_transaction)


def _release(conn: Connection, owns_transaction: bool) -> None:
    try:
        if conn.in_transaction() and owns_transaction:
            conn.rollback()  # whatever a failed run left open
        conn.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": LOCK_KEY})
        if owns_transaction:
            conn.commit()
    except DBAPIError:
        log.debug("could not release the migration lock; it ends with the session")
