"""Retry a revision that hit lock_timeout, so a busy table delays the deploy, not the app.

A DDL statement waiting for a table lock makes every later query on that table queue
behind it. lock_timeout bounds that stall; the revision is rolled back, the app's queries
go through, and after a jittered backoff the revision is tried again, up to
MIGRATION_LOCK_RETRIES times. Giving up names the session holding the lock.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable

from sqlalchemy import text
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError
from tenacity import Retrying, retry_if_exception, stop_after_attempt, wait_exponential_jitter

from neon_migrate.connection.timeouts import lock_timeout
from neon_migrate.errors import MigrationError
from neon_migrate.migrate import revision_session
from neon_migrate.migrate.progress import UNCOMMITTED, RevisionFailed
from neon_migrate.migrate.round_trips import FastMessageFailed
from neon_migrate.settings import Settings

log = logging.getLogger("neon_migrate.migrate")

# Tables a DDL statement locks: ALTER/LOCK/DROP/TRUNCATE TABLE x, CREATE INDEX ... ON x,
# REFERENCES x. Enough to name the blocker; the retry itself does not depend on it.
_NAME = r'(?:"(?:[^"]|"")+"|[\w$]+)'
_TABLE = re.compile(
    rf"""(?:\b(?:ALTER|LOCK|DROP|TRUNCATE)\s+TABLE\s+(?:IF\s+EXISTS\s+)?(?:ONLY\s+)?
        |\bON\s+(?:ONLY\s+)?|\bREFERENCES\s+)({_NAME}(?:\.{_NAME})?)""",
    re.IGNORECASE | re.VERBOSE,
)
# `ON DELETE`, `ON CONFLICT` ...: words that follow ON without naming a table.
_NOT_TABLES = {"delete", "update", "conflict", "commit", "column", "constraint", "only"}
# Literals in another session's query: never copy its data into our logs.
_LITERALS = re.compile(r"'(?:[^']|'')*'|\b\d+(?:\.\d+)?\b")

_HOLDERS = text(
    """
    SELECT DISTINCT a.pid, a.state, left(regexp_replace(a.query, '\\s+', ' ', 'g'), 120),
           extract(epoch FROM now() - coalesce(a.xact_start, a.query_start))::int
    FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
    WHERE l.granted AND l.locktype = 'relation' AND a.pid <> pg_backend_pid()
      AND l.relation = ANY (CAST(:tables AS regclass[]))
    ORDER BY 1
    """
)


def _lock_timeout_failure(exc: BaseException) -> bool:
    original = getattr(exc, "original", None)
    return (
        isinstance(exc, RevisionFailed)
        and isinstance(original, DBAPIError)
        and getattr(original.orig, "pgcode", None) == "55P03"  # lock_not_available
    )


def describe_blockers(conn: Connection, failure: RevisionFailed) -> str:
    """Who holds a lock on the tables the failed statement wanted, as one phrase."""
    statement = getattr(failure.original, "statement", "") or ""
    tables = sorted({n for n in _TABLE.findall(statement) if n.lower() not in _NOT_TABLES})
    if not tables:
        return "another session"
    try:
        existing = [
            t for t in tables if conn.execute(text("SELECT to_regclass(:t)"), {"t": t}).scalar()
        ]
        rows = conn.execute(_HOLDERS, {"tables": existing}).all() if existing else []
    except DBAPIError:
        rows = []
    finally:
        conn.rollback()  # leave no transaction open for Alembic to mistake for the caller's
    on = ", ".join(tables)
    if not rows:
        return f"another session (lock on {on})"
    holders = "; ".join(
        f"pid {pid} ({state}, {age}s: {_LITERALS.sub('?', query)})"
        for pid, state, query, age in rows
    )
    return f"{holders} (lock on {on})"


def replaying(run: Callable[[], None]) -> Callable[[], None]:
    """`run`, in which a revision whose one message failed (rolled back whole) runs again
    statement by statement: the normal path names the failing statement, or meets the busy
    lock again and takes the retry path. Each revision is replayed at most once."""

    def run_replaying() -> None:
        while True:
            try:
                return run()
            except FastMessageFailed as failed:
                from alembic import context

                attributes = context.config.attributes
                session = attributes.get(revision_session.ATTRIBUTE)
                if session is None or failed.revision in session.normal_only:
                    raise
                session.normal_only.add(failed.revision)
                attributes.pop(UNCOMMITTED, None)
                log.info("%s; running it statement by statement", failed.cause)

    return run_replaying


def run_with_lock_retries(conn: Connection, settings: Settings, run: Callable[[], None]) -> None:
    """Run the migrations; a revision that hit lock_timeout is retried after a backoff.

    Only on our own session: inside a caller's transaction the failure aborted it, and
    there is nothing left to retry in.
    """
    started = time.monotonic()
    attempts = settings.migration_lock_retries + 1

    def retryable(exc: BaseException) -> bool:
        # Not in a caller's (now aborted) transaction, and never a revision that may have
        # committed part of its work in an autocommit_block: running it again is unsafe.
        return _lock_timeout_failure(exc) and not exc.commits_midway and not conn.in_transaction()

    def note(state) -> None:
        failure = state.outcome.exception()
        log.warning(
            "%s: lock_timeout (%s) waiting for %s; retry %d of %d in %.1fs",
            failure.label, lock_timeout(settings), describe_blockers(conn, failure),
            state.attempt_number, attempts - 1, state.next_action.sleep,
        )  # fmt: skip

    retrying = Retrying(
        retry=retry_if_exception(retryable),
        stop=stop_after_attempt(attempts),
        wait=wait_exponential_jitter(multiplier=settings.migration_lock_retry_delay, max=30),
        before_sleep=note,
        reraise=True,
    )
    try:
        retrying(replaying(run))
    except RevisionFailed as failure:
        if not retryable(failure):
            raise
        raise MigrationError(
            f"{failure.label} could not get its locks in {attempts} attempts over "
            f"{time.monotonic() - started:.1f}s (lock_timeout {lock_timeout(settings)} each): "
            f"held by {describe_blockers(conn, failure)}",
            "end that session (SELECT pg_terminate_backend(<pid>)) or migrate when it is done; "
            "MIGRATION_LOCK_RETRIES and MIGRATION_LOCK_TIMEOUT bound the wait",
        ) from failure
