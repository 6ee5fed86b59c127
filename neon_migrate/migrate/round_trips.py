"""Two round trips for a one-statement revision: `BEGIN` + its statement, then stamp +
history row + `COMMIT`. psycopg2 alone spends five (its own `BEGIN`, the statement, the
stamp, the history row, the `COMMIT`), each a full latency to Neon.

How, without touching Alembic's or the revision's code:
- A transaction SQLAlchemy begins on our session runs on a psycopg2 connection switched to
  autocommit, and `BEGIN` is put in front of its first statement (in one message: the
  simple-query protocol runs them in order and returns the last result).
- The statements that end a revision (Alembic's stamp in the version table, our history
  row) are not sent when executed: they are kept, and go with the `COMMIT` in one message.
  Alembic requires the stamp to match exactly one row; the kept stamp checks that itself
  on the server (a DO block raises otherwise), so the message fails, and rolls back, just
  as Alembic's own check would have stopped the run. A statement of any other kind sends
  what was kept first, in front of itself.
- A failure in that last message leaves the transaction aborted: it is rolled back at
  once. A lost link there is the ambiguous commit that the read-back resolves, as before.

Only a transaction SQLAlchemy begins while psycopg2 is not already in autocommit is ours:
`autocommit_block` (which switches to AUTOCOMMIT itself) runs exactly as without us.

The fast path (fast_path.py) goes one step further: a revision rendered to SQL is `hold`-ed
here instead of run, so `BEGIN`, its statements, the stamp, the history row and `COMMIT`
travel as one message, one round trip. Such a message that fails (not a lost link) was
rolled back whole, and the server does not say which statement failed: FastMessageFailed
asks the run to replay that revision on the normal path (contention.py), which names the
statement, or retries a lock_timeout, exactly as if it had run there first.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable

from sqlalchemy import Delete, Update, event
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError

from neon_migrate import compat
from neon_migrate.connection.connect import driver_message
from neon_migrate.connection.waiting import lost_connection
from neon_migrate.errors import MigrationError
from neon_migrate.migrate.signals import received

# The stamp's own check, as Alembic's: one row matched, or the revision does not commit.
_CHECKED = (
    "DO $neon_migrate$DECLARE n bigint; BEGIN {statement}; GET DIAGNOSTICS n = ROW_COUNT; "
    "IF n <> 1 THEN RAISE EXCEPTION 'the stamp matched % rows of the version table, not 1 "
    "(was it changed by hand during the run?)', n; END IF; END$neon_migrate$"
)


# psycopg2's isolation levels, as SQLAlchemy names them (its default_isolation_level).
_LEVELS = {1: "READ COMMITTED", 2: "REPEATABLE READ", 3: "SERIALIZABLE", 4: "READ UNCOMMITTED"}


class FastMessageFailed(MigrationError):
    """A revision sent as one message failed and was rolled back whole; replay it."""

    def __init__(self, revision: str, why: str) -> None:
        self.revision = revision
        super().__init__(
            f"revision {revision} failed as one message ({why}) and was rolled back",
            "set MIGRATION_FAST_PATH=false to run it statement by statement, and run again",
        )


class RoundTrips:
    def __init__(self, conn: Connection, committed_midway: Callable[[], bool]) -> None:
        self.conn = conn
        self.committed_midway = committed_midway  # the running revision committed itself
        self.ours = False  # the running transaction is managed here
        self.begin_owed = False  # ... and its BEGIN has not been sent yet
        self.kept: list[str] = []  # stamp and history statements, in order, as sent SQL
        self.history_of: tuple[str, str] | None = None  # (revision, direction) of a kept row
        self.body_of: str | None = None  # the revision whose statements are held (fast path)
        self.sent: Callable[[], None] | None = None  # ... told when its message committed
        self.label = ""  # ... and its name, for a signal that stops that message
        self.went_ahead: tuple[str, float] | None = None  # (revision, ms) sent before its stamp
        self.flushing = False
        self._listeners = [
            (conn, "begin", self._begin, {}),
            (conn, "before_cursor_execute", self._before, {"retval": True}),
            (conn, "commit", self._commit, {}),
            (conn, "rollback", self._rollback, {}),
            (conn.engine, "do_execute", self._do_execute, {}),
        ]
        for target, name, fn, options in self._listeners:
            event.listen(target, name, fn, **options)

    def close(self) -> None:
        for target, name, fn, _ in self._listeners:
            event.remove(target, name, fn)
        if self.ours:  # a run that ended inside a transaction: the caller rolls it back
            self._end("ROLLBACK")

    # --- events ---------------------------------------------------------------------------
    def _dbapi(self):
        return self.conn.connection.dbapi_connection

    def _begin(self, _conn) -> None:
        dbapi = self._dbapi()
        if dbapi.autocommit:  # autocommit_block, or an AUTOCOMMIT caller: not ours
            return
        if _LEVELS.get(dbapi.isolation_level) == self.conn.dialect.default_isolation_level:
            # Set back to the session's own level after an autocommit_block, the level is
            # explicit to psycopg2, which then sends `SET default_transaction_isolation TO
            # DEFAULT` each time autocommit goes off: a round trip per revision, for nothing.
            dbapi.isolation_level = None  # the session's default, which that level is
        dbapi.autocommit = True  # no round trip: psycopg2 only remembers it
        self.ours, self.begin_owed = True, True
        self.kept, self.history_of, self.body_of, self.sent = [], None, None, None

    def hold(
        self, revision: str, label: str, statements: tuple[str, ...], sent: Callable[[], None]
    ) -> bool:
        """Keep a rendered revision's statements to send with its stamp and COMMIT, and call
        `sent` once that message has committed; False when no transaction of ours is open
        for them (the caller then runs it normally)."""
        if not self.ours or self.kept:
            return False
        self.kept, self.body_of, self.sent = list(statements), revision, sent
        self.label = label
        return True

    def _keeps(self, context) -> bool:
        """A stamp in the version table, or our history row: what ends a revision."""
        if not self.ours or self.flushing or context is None or context.compiled is None:
            return False
        statement = context.compiled.statement
        if _is_history(statement):
            return True
        if not isinstance(statement, (Update, Delete)):  # the INSERT of a first stamp
            return False  # returns its key (RETURNING): it goes at once, as before
        from alembic import context as alembic_context

        try:
            migration = alembic_context.get_context()
        except Exception:  # no Alembic run in progress: nothing to keep
            return False
        table = statement.table
        return (
            getattr(table, "name", None) == migration.version_table
            and getattr(table, "schema", None) == migration.version_table_schema
        )

    def _before(self, _conn, cursor, statement, parameters, context, executemany):
        if context is not None and self._keeps(context):
            context._neon_migrate_keep = True
            return statement, parameters
        first = ["BEGIN"] if self.begin_owed else []
        if not self.flushing:  # something else: what was kept goes first
            first += self.kept
            self.kept = []
        self.begin_owed = False
        if self.body_of is not None and first:  # a held revision: on its own, to tell apart
            self._send_body(cursor, ";\n".join(first))
            first = []
        if first and executemany:  # a prefix would be sent once per parameter set
            cursor.execute(";\n".join(first))
        elif first:  # psycopg2 formats the whole text with the statement's parameters
            statement = ";\n".join([*(s.replace("%", "%%") for s in first), statement])
        return statement, parameters

    def _do_execute(self, cursor, statement, parameters, context):
        if not getattr(context, "_neon_migrate_keep", False):
            return None
        sql = cursor.mogrify(statement, parameters).decode()
        if _is_history(context.compiled.statement):
            self.history_of = (parameters["revision"], parameters["direction"])
        else:
            sql = _CHECKED.format(statement=sql)
        self.kept.append(sql)
        compat.count_as_one_row(context)  # what _CHECKED guarantees, or no COMMIT
        return True

    def _commit(self, _conn) -> None:
        if not self.ours:
            return
        if self.begin_owed and not self.kept:  # nothing was sent: nothing to commit
            self._reset()
            return
        begin = ["BEGIN"] if self.begin_owed else []  # a revision with nothing to run
        message = ";\n".join([*begin, *self.kept, "COMMIT"])
        history_of, body_of, self.kept = self.history_of, self.body_of, []
        self.begin_owed, self.flushing = False, True
        try:
            self.conn.exec_driver_sql(message.replace("%", "%%"))
        except BaseException as exc:  # a signal too: the transaction must not stay open
            self.flushing = False
            label = self.label
            self._end("ROLLBACK")
            if body_of is not None:
                replay = _held_failed(exc, body_of, label)
                if replay is not None:
                    raise replay from exc
            elif history_of and isinstance(exc, DBAPIError) and _history_failed(exc):
                from neon_migrate.migrate.history import unwritable

                raise unwritable(*history_of, exc, self.committed_midway()) from exc
            raise
        finally:
            self.flushing = False
        sent = self.sent
        self._reset()
        if sent is not None:
            sent()

    def _rollback(self, _conn) -> None:
        if self.ours:
            self._end("ROLLBACK")

    # --- helpers --------------------------------------------------------------------------
    def _end(self, statement: str) -> None:
        """Send `statement` (still in autocommit: psycopg2 would put a BEGIN first)."""
        with contextlib.suppress(Exception):  # a lost link ends the transaction itself
            if self.ours and not self.begin_owed:
                with self._dbapi().cursor() as cursor:
                    cursor.execute(statement)
        self._reset()

    def _send_body(self, cursor, sql: str) -> None:
        """A held revision's BEGIN and statements, ahead of a statement that cannot wait
        (the INSERT of a first stamp): a failure is the revision's, to be replayed."""
        revision, label, self.body_of = self.body_of, self.label, None
        started = time.perf_counter()
        try:
            cursor.execute(sql.replace("%", "%%"), {})
            self.went_ahead = (revision, (time.perf_counter() - started) * 1000)
        except BaseException as exc:
            self._end("ROLLBACK")
            replay = _held_failed(exc, revision, label)
            if replay is not None:
                raise replay from exc
            raise

    def _reset(self) -> None:
        was_ours = self.ours
        self.ours = self.begin_owed = False
        self.kept, self.history_of, self.body_of, self.sent = [], None, None, None
        if was_ours:
            with contextlib.suppress(Exception):  # closed: nothing left to switch back
                self._dbapi().autocommit = False


def _is_history(statement) -> bool:
    from neon_migrate.migrate.history import ROW, ROW_TIMED_BY_SERVER  # it imports us

    return statement is ROW or statement is ROW_TIMED_BY_SERVER


def _history_failed(exc: DBAPIError) -> bool:
    from neon_migrate.migrate.history import HISTORY_TABLE

    return not lost_connection(exc) and HISTORY_TABLE in driver_message(exc)


def _held_failed(exc: BaseException, revision: str, label: str) -> FastMessageFailed | None:
    """A held revision's message failed: replay it on the normal path, unless the link is
    gone (the read-back decides) or a signal stopped the run (it says which revision)."""
    if getattr(exc, "label", None) is None:
        with contextlib.suppress(AttributeError):  # what progress.py gives an interrupt
            exc.label, exc.commits_midway = label, False  # type: ignore[attr-defined]
    if isinstance(exc, Exception) and not lost_connection(exc) and received() is None:
        return FastMessageFailed(revision, driver_message(exc))
    return None
