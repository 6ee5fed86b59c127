"""The advisory lock that serializes migration runs, and the migration session's timeouts.

Alembic takes no lock: two deploys upgrading at once collide on the same DDL. On our own
connection the lock is session-level, because a transaction-level one is released by
`autocommit_block`; that is also why migrations need the direct endpoint, since PgBouncer
in transaction mode gives no session to keep it in. When the caller hands over a
connection already inside a transaction, everything runs in that transaction, so the lock
and the timeouts are transaction-scoped and end with it. The timeouts are set in the same
statement as the first lock attempt: on Neon every round trip crosses a network.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import text
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError, SQLAlchemyError
from tenacity import Retrying, retry_if_result, wait_exponential

from neon_migrate.connection.connect import driver_message
from neon_migrate.connection.timeouts import SESSION_SETTING, lock_timeout, statement_timeout
from neon_migrate.errors import ConfigError, LockBusyError
from neon_migrate.migrate.history import ENSURE, HISTORY_TABLE
from neon_migrate.project import VersionTable
from neon_migrate.settings import Settings

log = logging.getLogger("neon_migrate.migrate")

# 'neonmigr' as a 64-bit integer: the key of the default version table (alembic_version),
# the same as before version tables were configurable, so older runs still queue behind it.
LOCK_KEY = int.from_bytes(b"neonmigr", "big")


def lock_key(table: VersionTable | None = None) -> int:
    """The migration lock for one version table: database + schema + table.

    An advisory lock belongs to its database already (pg_locks.database); the schema and
    the table make it one per project, so two projects sharing a database, each with its
    own version table, never wait for each other's migrations."""
    if table is None or table == VersionTable():
        return LOCK_KEY
    digest = hashlib.sha256(f"neon-migrate:{table.schema or ''}:{table.name}".encode()).digest()
    return int.from_bytes(digest[:8], "big") >> 1  # positive: classid/objid read it back


# The longest pause between two tries for a held lock: the delay a waiter adds after the
# holder lets go, against one round trip per try.
POLL_MAX_SECONDS = 1.0

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


def lock_holder(conn: Connection, key: int = LOCK_KEY) -> str | None:
    """Who holds the migration lock now, in words; None when nobody does."""
    row = conn.execute(_HOLDER, {"hi": key >> 32, "lo": key & 0xFFFFFFFF}).first()
    if row is None:
        return None
    pid, app, client, age = row
    return f"pid {pid} (application '{app or '?'}', from {client}, connected {age}s ago)"


def describe_holder(conn: Connection, key: int = LOCK_KEY) -> str:
    return lock_holder(conn, key) or "another session (it has just released it)"


class NotOneSession(ConfigError):
    def __init__(self) -> None:
        super().__init__(
            "the migrations' endpoint did not apply the session's startup options (its "
            "lock and statement timeouts): it is a connection pooler that drops them, such "
            "as PgBouncer with ignore_startup_parameters = options; nothing was run",
            "point DATABASE_URL_DIRECT at the database itself (on Neon: the host without "
            "-pooler); migrations need one real server session",
        )


# What CREATE TABLE IF NOT EXISTS raises when another session creates the same table at
# the same moment; which one depends on the instant the other commits: a unique violation
# in pg_type or pg_class, "relation already exists", or "type already exists".
CREATED_MEANWHILE = ("23505", "42P07", "42710")


class _Lock:
    """The statements for one scope: 'session' (our connection) or 'transaction' (caller's)."""

    def __init__(self, conn: Connection, settings: Settings, scope: str, key: int) -> None:
        self.conn, self.settings, self.key = conn, settings, key
        self.local = "true" if scope == "transaction" else "false"
        self.xact = "_xact" if scope == "transaction" else ""
        self.original: tuple[str, str] | None = None  # the session's own timeouts, once read
        self.history_later = False  # the history table is created once the lock is held
        self.held = False  # the lock is ours: a failure after it must let it go

    def set_timeouts(self, lock: str, statement: str) -> None:
        self.conn.execute(
            text(
                f"SELECT set_config('lock_timeout', :lock, {self.local}), "
                f"set_config('statement_timeout', :stmt, {self.local})"
            ),
            {"lock": lock, "stmt": statement},
        )

    def set_timeouts_and_try(self, token: str | None) -> bool:
        """One round trip: create the history table if it is missing (history.ENSURE),
        remember the session's timeouts, set ours, try the lock; all of it only if the
        session carries `token` from its startup packet (when given).

        A pooler that drops startup options (PgBouncer's ignore_startup_parameters =
        options) hands us a server session without the token: nothing is set or locked
        there, since the next statement may run on another server session and could
        never unlock it, and our timeouts would stay behind for other clients.
        """
        try:
            return self._set_timeouts_and_try(token)
        except DBAPIError as exc:  # two first runs created the history table at once
            if self.xact or getattr(exc.orig, "pgcode", None) not in CREATED_MEANWHILE:
                raise
            self.conn.rollback()
            return self._set_timeouts_and_try(token)

    def _set_timeouts_and_try(self, token: str | None) -> bool:
        ok = (
            f"(CAST(:token AS text) IS NULL OR current_setting('{SESSION_SETTING}', true) = :token)"
        )
        # psycopg 3 sends a statement with parameters as a prepared one: one statement only.
        self.history_later = self.conn.dialect.driver != "psycopg2"
        ensure = "" if self.history_later else ENSURE.format(allowed=ok) + ";\n"
        lock, statement, carried, _, _, got = self.conn.execute(
            text(
                f"{ensure}SELECT current_setting('lock_timeout'), "
                "current_setting('statement_timeout'), "
                f"{ok}, "
                f"CASE WHEN {ok} THEN set_config('lock_timeout', :lock, {self.local}) END, "
                f"CASE WHEN {ok} THEN set_config('statement_timeout', :stmt, {self.local}) END, "
                f"CASE WHEN {ok} THEN pg_try_advisory{self.xact}_lock(:key) END"
            ),
            {
                "token": token,
                "lock": lock_timeout(self.settings),
                "stmt": statement_timeout(self.settings),
                "key": self.key,
            },
        ).one()
        if not carried:
            raise NotOneSession()
        self.original = (lock, statement)
        self.held = bool(got)
        return got

    def wait(self) -> None:
        """Wait until the holder lets go, at most MIGRATION_LOCK_WAIT; say who we wait for.

        The wait is a poll of pg_try_advisory_lock, never a blocking pg_advisory_lock: a
        waiter blocked inside a statement holds a snapshot that the holder's CREATE INDEX
        CONCURRENTLY must wait out while we wait for the holder, a deadlock PostgreSQL
        breaks by killing one of the two, possibly the holder half-way through a revision.
        On our own session each try runs in autocommit; in a caller's transaction (READ
        COMMITTED) no snapshot is held between two tries either.
        """
        holder = describe_holder(self.conn, self.key)
        wait = self.settings.migration_lock_wait
        busy = LockBusyError(
            f"the migration lock is held by {holder} for longer than MIGRATION_LOCK_WAIT={wait:g}s",
            "let that run finish, or stop it with SELECT pg_terminate_backend(<pid>)",
        )
        if wait <= 0:
            raise busy
        log.info("waiting up to %gs for the migration lock held by %s", wait, holder)
        started = time.monotonic()
        if self.xact:
            self._poll(started + wait, busy)
        else:
            self.conn.commit()  # keeps the timeouts set with the first try
            level = self.conn.get_isolation_level()
            self.conn.execution_options(isolation_level="AUTOCOMMIT")
            try:
                self._poll(started + wait, busy)
            finally:  # never let a failed restore hide why the poll ended
                with contextlib.suppress(SQLAlchemyError):
                    if self.conn.in_transaction():
                        self.conn.rollback()
                    self.conn.execution_options(isolation_level=level)
        self.held = True
        log.info("got the migration lock after waiting %.1fs", time.monotonic() - started)

    def _poll(self, deadline: float, busy: LockBusyError) -> None:
        """Try at once (the first try was a moment ago), then after 50 ms, doubling up to
        POLL_MAX_SECONDS, until the deadline."""

        def try_once() -> bool:
            tried = self.conn.execute(
                text(f"SELECT pg_try_advisory{self.xact}_lock(:key)"), {"key": self.key}
            )
            got = bool(tried.scalar())
            if not self.xact:
                self.conn.commit()  # autocommit: ends SQLAlchemy's transaction, sends nothing
            return got

        def out_of_time(_state) -> None:
            raise busy

        Retrying(
            sleep=lambda seconds: time.sleep(min(seconds, max(deadline - time.monotonic(), 0))),
            wait=wait_exponential(multiplier=0.05, max=POLL_MAX_SECONDS),
            retry=retry_if_result(lambda got: not got),
            stop=lambda _state: time.monotonic() >= deadline,
            retry_error_callback=out_of_time,
        )(try_once)

    def restore(self) -> None:
        """Our session after a failed start: the caller's own timeouts back (the first try
        set ours, and waiting committed them)."""
        with contextlib.suppress(SQLAlchemyError):
            if self.conn.in_transaction():
                self.conn.rollback()
            if self.original is not None:
                self.set_timeouts(*self.original)
                self.conn.commit()

    def release(self) -> None:
        """Session scope only: unlock, and give the session its own timeouts back."""
        self.conn.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": self.key})
        if self.original is not None:
            self.set_timeouts(*self.original)


@contextmanager
def migration_lock(
    conn: Connection, settings: Settings, token: str | None = None, key: int = LOCK_KEY
) -> Iterator[str]:
    """Hold the lock, with the migration timeouts set, for the body of the block; yields
    the scope of both: "session" (our connection) or "transaction" (a caller's).

    On our own connection, the transaction our statements autobegan is committed before
    Alembic sees the connection: Alembic would otherwise take it for the caller's
    transaction, skip its own BEGIN/COMMIT, and every DDL statement would be rolled back
    when the connection closes (the silent-rollback trap).
    """
    scope = "transaction" if conn.in_transaction() else "session"
    lock = _Lock(conn, settings, scope, key)
    try:
        if not lock.set_timeouts_and_try(token):
            lock.wait()
        if lock.history_later:
            conn.execute(text(ENSURE.format(allowed="true")))
    except BaseException as exc:
        if scope == "session":
            if lock.held:  # e.g. the history table could not be created after it
                with contextlib.suppress(SQLAlchemyError):
                    conn.rollback()
                    lock.release()
                    conn.commit()
            lock.restore()
        if isinstance(exc, DBAPIError) and getattr(exc.orig, "pgcode", None) == "42501":
            raise ConfigError(
                f"the migration role may not create {HISTORY_TABLE}, the record of applied "
                f"revisions, which a first run creates ({driver_message(exc)})",
                "let it create tables in its schema (GRANT CREATE ON SCHEMA public TO "
                "<role>), or run the first migration with a role that may",
            ) from None
        raise
    if scope == "transaction":
        yield scope  # lock and timeouts end with the caller's transaction
        return
    conn.commit()
    try:
        yield scope
    finally:
        try:
            if not conn.invalidated:  # a lost link: the lock ends with the server session
                if conn.in_transaction():
                    conn.rollback()  # whatever a failed run left open
                lock.release()
                conn.commit()
        except SQLAlchemyError:
            log.debug("could not release the migration lock; it ends with the session")
