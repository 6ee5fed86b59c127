"""Ctrl-C or SIGTERM (a deploy being stopped) during a migration: cancel, roll back, exit.

By default SIGTERM kills the process at once, and the server does not notice until its
running statement ends (a pg_sleep, a long index build), holding the revision's locks and
the migration lock all that time. Instead, the running statement is cancelled on the
server, the revision's transaction rolls back, the lock is released, and the process exits
non-zero within a second or so.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg2.extensions
import psycopg2.extras

from app.errors import MigrationError

_received: list[int] = []


class Interrupted(KeyboardInterrupt):
    """Raised by our handler. A KeyboardInterrupt, so psycopg2's wait_select cancels the
    query it is waiting for instead of abandoning it."""


class RunInterrupted(MigrationError):
    def __init__(self, signum: int, running: str | None) -> None:
        self.exit_code = 128 + signum
        during = f" during {running}" if running else ""
        super().__init__(
            f"interrupted by {signal.Signals(signum).name}{during}; the running revision "
            "was rolled back and the migration lock released",
            "run the migration again when ready; the database is at the last revision "
            "that completed",
        )


def received() -> int | None:
    """The signal that stopped this run, if one did."""
    return _received[0] if _received else None


def _handler(signum: int, _frame) -> None:
    if _received:  # a second signal while cleaning up: let the cleanup finish
        return
    _received.append(signum)
    raise Interrupted


@contextmanager
def stop_on_signals() -> Iterator[None]:
    """SIGINT and SIGTERM raise Interrupted for the duration of the run."""
    if threading.current_thread() is not threading.main_thread():
        yield  # handlers can only be set from the main thread; an embedding app owns them
        return
    _received.clear()
    previous = {sig: signal.signal(sig, _handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


@contextmanager
def cancellable_queries() -> Iterator[None]:
    """Make statements interruptible: waits go through select(), and an Interrupted raised
    there cancels the statement on the server. Set after connecting, because psycopg2
    ignores connect_timeout for connections opened with a wait callback in place."""
    previous = psycopg2.extensions.get_wait_callback()
    psycopg2.extensions.set_wait_callback(psycopg2.extras.wait_select)
    try:
        yield
    finally:
        psycopg2.extensions.set_wait_callback(previous)
