"""What the session looks like to each revision, and what a revision may change of it.

Two things a revision can do to the session outlive it unless the harness steps in:
- It can set its own `lock_timeout` / `statement_timeout` (a long backfill often does),
  and a session-level SET would then bound every later revision of the run too. Each
  revision starts with the harness's timeouts again; a revision that wants other values
  sets them for itself (`SET LOCAL` ends with its transaction; a plain SET is undone
  before the next revision).
- It can end Alembic's transaction (`op.get_bind().commit()`, `autocommit_block()`).
  Alembic then writes the stamp into a transaction nobody commits: the revision's work
  is in the database and the stamp is lost. A revision seen to commit has its stamp
  (and its history row, see history.py) committed right after Alembic writes it (the
  `on_version_apply` hook).
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable

from alembic.runtime.migration import MigrationContext
from alembic.script import Script
from sqlalchemy import event, text
from sqlalchemy.engine import Connection
from sqlalchemy.exc import SQLAlchemyError

from neon_migrate.connection import waiting
from neon_migrate.connection.timeouts import lock_timeout, statement_timeout
from neon_migrate.migrate import fast_path
from neon_migrate.migrate.round_trips import RoundTrips
from neon_migrate.settings import Settings

ATTRIBUTE = "revision_session"  # config.attributes key

_TIMEOUT_CHANGE = re.compile(
    r"\b(?:SET|RESET)\s+(?:SESSION\s+)?(?:lock_timeout|statement_timeout|ALL)\b"
    r"|\bset_config\s*\(\s*'(?:lock|statement)_timeout'",
    re.IGNORECASE,
)


class RevisionSession:
    def __init__(self, conn: Connection, settings: Settings, scope: str) -> None:
        self.conn, self.settings = conn, settings
        self.local = "true" if scope == "transaction" else "false"
        self.timeouts_changed = False  # by an earlier revision, not yet put back for good
        self._changed_now = False  # by the running revision
        self._opened = None  # the transaction the running revision started in
        self.committed = False  # the running revision ended that transaction itself
        # How long a statement may go unanswered before the link counts as dead, from the
        # first revision to the last COMMIT (a deferred constraint can make that slow):
        # the statement_timeout the server enforces, plus DB_CONNECT_TIMEOUT.
        grace = settings.db_connect_timeout
        self._revision_limit = (
            settings.migration_statement_timeout + grace
            if settings.migration_statement_timeout
            else None
        )
        self._limit(self._revision_limit)
        event.listen(conn, "before_cursor_execute", self._watch)
        # A caller's transaction is committed by the caller: nothing to save there. psycopg
        # 3 sends a statement with parameters as a prepared one: never two statements.
        ours = scope == "session" and conn.dialect.driver == "psycopg2"
        self._trips = RoundTrips(conn, lambda: self.committed) if ours else None
        self.normal_only: set[str] = set()  # failed as one message: replayed, and run normally

    def _limit(self, seconds: float | None) -> None:
        """The wait limit of our DBAPI connection; nothing once it is gone (a signal or a
        lost link closed it)."""
        if not (self.conn.closed or self.conn.invalidated):
            with contextlib.suppress(SQLAlchemyError):
                waiting.limit(self.conn.connection.dbapi_connection, seconds)

    def send_as_one(self, script: Script, label: str, sent: Callable[[], None]) -> bool:
        """The fast path: hold the revision's rendered statements, to go with its stamp and
        COMMIT in one message; False: run its upgrade() as usual (fast_path.py says why)."""
        if self._trips is None or not self.settings.migration_fast_path:
            return False
        if script.revision in self.normal_only:
            return False
        chosen = self._plan(script)
        return chosen.fast and self._trips.hold(script.revision, label, chosen.statements, sent)

    def held_timing(self, revision: str) -> str | float | None:
        """How the duration of `revision`, sent on the fast path, is known: "server" (its
        statements are held, and its history row goes in the same message), the ms they
        took when they had to go ahead of a first stamp, or None (not on the fast path)."""
        if self._trips is None:
            return None
        if self._trips.body_of == revision:
            return "server"
        went = self._trips.went_ahead
        return went[1] if went is not None and went[0] == revision else None

    def _plan(self, script: Script) -> fast_path.Plan:
        from alembic import context

        metadata = context.get_context().opts.get("target_metadata")
        version = self.conn.dialect.server_version_info
        return fast_path.plan(script, version, metadata)

    def close(self) -> None:
        """After the run: the harness's own short limit again (release, read-back)."""
        event.remove(self.conn, "before_cursor_execute", self._watch)
        if self._trips is not None:
            self._trips.close()
        self._limit(waiting.DEFAULT)

    def _watch(self, _conn, _cursor, statement, *_args) -> None:
        if _TIMEOUT_CHANGE.search(statement):
            self._changed_now = True
            # Its own statement_timeout (SET statement_timeout = '30min', or 0) is the
            # revision's to choose: the client stops timing it, TCP still bounds the link.
            self._limit(None)

    def start(self) -> None:
        """Before a revision: the harness's timeouts, and note which transaction it is in."""
        if self.timeouts_changed:
            self.conn.execute(
                text(
                    f"SELECT set_config('lock_timeout', :lock, {self.local}), "
                    f"set_config('statement_timeout', :stmt, {self.local})"
                ),
                {"lock": lock_timeout(self.settings), "stmt": statement_timeout(self.settings)},
            )
            self._limit(self._revision_limit)  # the restore itself looked like a change
        self._changed_now = False
        self._opened = self.conn.get_transaction()
        self.committed = False

    def finish(self, ok: bool) -> bool:
        """After a revision's function: whether it committed part of its work itself.

        A revision that failed keeps the pending restore: its retry starts as it did."""
        self.committed = self.conn.get_transaction() is not self._opened
        if self._changed_now:  # its own timeout no longer applies once it is restored
            self._limit(self._revision_limit)
        if ok:
            self.timeouts_changed = self._changed_now
        else:
            self.timeouts_changed = self.timeouts_changed or self._changed_now
        return self.committed


def keep_stamp(ctx: MigrationContext, **kwargs) -> None:
    """on_version_apply: the revision's history row, written next to its stamp; then the
    stamp and that row of a revision that committed itself are committed, together."""
    from neon_migrate.migrate.history import record_revision  # it imports progress: us

    record_revision(ctx, **kwargs)  # before the commit below: one commit for both
    session = ctx.config.attributes.get(ATTRIBUTE) if ctx.config is not None else None
    if session is not None and session.committed and ctx.connection.in_transaction():
        ctx.connection.commit()
        session.committed = False
