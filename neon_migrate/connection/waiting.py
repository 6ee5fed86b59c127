"""Every wait on the network, bounded, and interruptible by Ctrl-C / SIGTERM.

libpq blocks inside C while it waits for the server, with Python's signal handlers held
off until it returns. On a link that stops passing packets (no FIN, no RST) it returns
only when TCP gives up, if ever: `make migrate` hung, SIGTERM did nothing, and the
server session sat idle in transaction holding its locks. With a psycopg2 wait callback
the driver hands every wait back to Python, which waits here, in `select`, where:

- each wait has a deadline: connecting gets DB_CONNECT_TIMEOUT; a statement gets the
  limit its connection was given (`limit()`), by default DB_CONNECT_TIMEOUT too, and
  for a migration's revisions MIGRATION_STATEMENT_TIMEOUT plus a grace (the server
  cancels the statement by then, so silence past it means the link is gone);
- a signal's handler runs at once: a connect stops there (nothing runs on the server
  yet); a running statement is cancelled (by the signal watcher) and, if the server does
  not confirm within CANCEL_GRACE seconds (the link may be dead), the wait gives up and
  the run ends. Either way the signal's KeyboardInterrupt is what comes out, so the run
  reports the signal that stopped it, not a lost link (LinkSilent is its cause).

TCP keepalives and tcp_user_timeout (connect arguments) bound the same failure at the
socket on a real network; this bounds it whatever the network does, a stalled proxy too.
Only processes of ours install it (`install()`): the CLI and the `alembic` command.
"""

from __future__ import annotations

import select
import time
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import psycopg2
import psycopg2.extensions as ext

CANCEL_GRACE = 3.0  # seconds the server gets to confirm a cancel after a signal
CONNECTION_OK = 0  # libpq's PQstatus (conn.info.status) once the session is up
SLICE = 0.25  # the longest a signal's handler waits to run
# After this long without an answer, and as often, a connection with a probe asks the
# server, on a session of its own, whether it is still running our statement.
PROBE_EVERY = 5.0

_limits: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_probes: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_default = {"seconds": 10.0}  # DB_CONNECT_TIMEOUT once install() has run


class LinkSilent(psycopg2.OperationalError):
    """Nothing came from the server within the wait's deadline: the link is presumed dead."""


def install(connect_timeout: float) -> None:
    """Route every psycopg2 wait of this process through `wait` (idempotent)."""
    _default["seconds"] = float(connect_timeout)
    ext.set_wait_callback(wait)


def installed() -> bool:
    return ext.get_wait_callback() is wait


@contextmanager
def bounded(connect_timeout: float) -> Iterator[None]:
    """`install` for the length of the block, then whatever was there before: a process
    that calls alembic.config.main() (an app at start-up) keeps its own waits."""
    previous, default = ext.get_wait_callback(), _default["seconds"]
    install(connect_timeout)
    try:
        yield
    finally:
        ext.set_wait_callback(previous)
        _default["seconds"] = default


@contextmanager
def blocking() -> Iterator[None]:
    """Plain blocking waits for the block: psycopg2 refuses COPY and large objects while
    a wait callback is set. For a revision:

        with blocking():
            op.get_bind().connection.dbapi_connection.cursor().copy_expert(sql, file)

    Inside it only TCP keepalives bound a silent link, and signals wait for the driver.
    """
    previous = ext.get_wait_callback()
    ext.set_wait_callback(None)
    try:
        yield
    finally:
        ext.set_wait_callback(previous)


DEFAULT = object()  # limit(conn, DEFAULT): back to the process's default


def limit(dbapi_connection, seconds) -> None:
    """How long this connection's statements may go unanswered; None: no limit."""
    if seconds is DEFAULT:
        _limits.pop(dbapi_connection, None)
    else:
        _limits[dbapi_connection] = seconds


def probe_with(dbapi_connection, probe: Callable[[], str | None]) -> None:
    """While a statement on this connection goes unanswered, call `probe` every
    PROBE_EVERY seconds; a reason it returns ends the wait as a lost link.

    A statement may rightly run for minutes, so silence alone cannot tell a dead link
    before the statement's own limit (10 min by default; none when a revision sets its
    own statement_timeout). The server can: a session that is no longer running our
    statement, or is gone, will never answer."""
    _probes[dbapi_connection] = probe


def _probe(conn) -> str | None:
    probe = _probes.get(conn)
    if probe is None:
        return None
    try:
        return probe()
    except Exception:  # the probe cannot get through either: the deadline still bounds it
        return None


def wait(conn) -> None:
    """psycopg2's wait callback: poll the connection until its operation completes."""
    seconds = _limits.get(conn, _default["seconds"])
    deadline = None if seconds is None else time.monotonic() + seconds
    next_probe = time.monotonic() + PROBE_EVERY
    interrupted: BaseException | None = None
    while True:
        try:
            state = conn.poll()
            if state == ext.POLL_OK:
                if interrupted is not None:  # cancelled (or done): the server answered
                    interrupted.link_alive = True  # type: ignore[attr-defined]
                    raise interrupted
                return
            fd = conn.fileno()
            readers, writers = ([fd], []) if state == ext.POLL_READ else ([], [fd])
            now = time.monotonic()
            if deadline is not None and now >= deadline:
                if interrupted is not None:  # the signal ends the run; the link is why late
                    raise interrupted from LinkSilent(_silence(seconds, interrupted))
                raise LinkSilent(_silence(seconds, interrupted))
            if now >= next_probe and interrupted is None:
                reason = _probe(conn)
                if reason:
                    raise LinkSilent(reason)
                now, next_probe = time.monotonic(), time.monotonic() + PROBE_EVERY
                if deadline is not None and now >= deadline:
                    continue
            # Short slices: a signal delivered to another thread interrupts nothing here,
            # and its Python handler runs only once this thread is back in Python.
            timeout = SLICE if deadline is None else min(SLICE, deadline - now)
            select.select(readers, writers, [], timeout)
        except KeyboardInterrupt as exc:  # our signal handler: give the cancel a moment
            if interrupted is not None or _connecting(conn):
                raise  # a second signal; or a connect, which has nothing to cancel
            interrupted = exc
            deadline = min(deadline or float("inf"), time.monotonic() + CANCEL_GRACE)


def _connecting(conn) -> bool:
    try:
        return conn.info.status != CONNECTION_OK
    except psycopg2.Error:  # closed: nothing to wait for either
        return True


def _silence(seconds: float | None, interrupted: BaseException | None) -> str:
    if interrupted is not None:
        return f"the server did not confirm the cancel within {CANCEL_GRACE:g}s"
    return f"no answer from the server for {seconds:g}s: the network to it has gone silent"


# What libpq says when a link breaks under a statement (a reset, a server gone away).
_LOST = (
    "server closed the connection unexpectedly",
    "ssl syscall error",
    "ssl connection has been closed unexpectedly",
    "could not receive data from server",
    "could not send data to server",
    "connection reset by peer",
    "terminating connection due to administrator command",
    "connection already closed",
)


# What the server says when it ends a migration session for idling (not the network).
IDLE_ENDED = ("idle-in-transaction timeout", "idle-session timeout")


def _chain(exc: BaseException | None) -> Iterator[BaseException]:
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        yield exc
        yield from ([exc.orig] if getattr(exc, "orig", None) is not None else [])
        exc = exc.__cause__ or exc.__context__


def lost_connection(exc: BaseException) -> bool:
    """Whether an error (or one it was raised from) means the link went away, not that
    the SQL failed, nor that the server ended an idle session on purpose."""
    for seen in _chain(exc):
        text = str(seen).lower()
        if any(marker in text for marker in IDLE_ENDED):
            return False
        if getattr(seen, "connection_invalidated", False) or isinstance(seen, LinkSilent):
            return True
        if isinstance(seen, psycopg2.Error) and any(m in text for m in _LOST):
            return True
    return False


def answered_after_signal(exc: BaseException) -> bool:
    """Whether the server answered after a signal: the link works, a new session is
    worth the round trip (psycopg2 closed the interrupted one)."""
    return any(getattr(seen, "link_alive", False) for seen in _chain(exc))


def unconfirmed_cancel(exc: BaseException) -> bool:
    """Whether the server never confirmed the cancel a signal asked for."""
    return any(isinstance(seen, LinkSilent) and "cancel" in str(seen) for seen in _chain(exc))
