"""Ctrl-C or SIGTERM (a deploy being stopped) during a migration: cancel, roll back, exit.

By default SIGTERM kills the process at once, and the server does not notice until its
running statement ends (a pg_sleep, a long index build), holding the revision's locks and
the migration lock all that time. Instead:

- the signal wakes a watcher thread (through `signal.set_wakeup_fd`), and the watcher
  cancels the running statement on the server (through a session of its own);
- the Python handler raises Interrupted in the main thread, so the run stops even when no
  statement was running: the revision's transaction rolls back, the lock is released;
- a second signal gets the default action: it kills at once.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from neon_migrate.errors import MigrationError

SIGNALS = (signal.SIGINT, signal.SIGTERM)
_received: list[int] = []


class Interrupted(KeyboardInterrupt):
    """Raised by our handler; a BaseException, so nothing on the way swallows it."""


class RunInterrupted(MigrationError):
    def __init__(
        self,
        signum: int,
        running: str | None,
        committed_midway: bool = False,
        unconfirmed: bool = False,
        commit: str = "",
    ) -> None:
        self.exit_code = 128 + signum
        name = signal.Signals(signum).name
        fix = "run the migration again when ready"
        # `commit`: the revision went as one message with its COMMIT (the fast path), and
        # the stamp read back says it was "committed" (the cancel came too late), or the
        # database could not be read ("unknown"); "": not committed, or not at its COMMIT.
        if running and commit == "committed":
            cause = (f"interrupted by {name} during {running}, too late: its COMMIT had gone "
                     "through, and it is applied (read back)")  # fmt: skip
        elif running and commit == "unknown":
            cause = f"interrupted by {name} during {running}, sent with its COMMIT; "
            if unconfirmed:
                cause += "the server did not confirm the cancel, and "
            cause += "whether it was committed is unknown (it could not be read back)"
            fix = ("run `make verify` when the database answers (at this revision it was "
                   "committed), then " + fix)  # fmt: skip
        elif running and committed_midway:
            cause = (f"interrupted by {name} during {running}, after it had committed part of "
                     "its work (autocommit_block or commit()); the rest was rolled back and "
                     "the migration lock released")  # fmt: skip
            fix = ("make the revision safe to run again (IF NOT EXISTS, IF EXISTS) and drop "
                   "any INVALID index it left (`make verify` lists them), then " + fix)  # fmt: skip
        elif running and unconfirmed:  # the link is gone: the server does it when it notices
            cause = (f"interrupted by {name} during {running}; the server did not confirm "
                     "the cancel: it rolls the revision back and releases the migration lock "
                     "when it notices the session is gone (within MIGRATION_IDLE_TIMEOUT, or "
                     "MIGRATION_STATEMENT_TIMEOUT while a statement runs)")  # fmt: skip
        elif running:
            cause = (f"interrupted by {name} during {running}; it was rolled back and the "
                     "migration lock released")  # fmt: skip
        else:
            cause = f"interrupted by {name}; no revision was half-applied"
        super().__init__(cause, fix)


def received() -> int | None:
    """The signal that stopped this run, if one did."""
    return _received[0] if _received else None


def interrupt(signum: int, _frame) -> None:
    """A handler for a process that stops on SIGTERM as on SIGINT outside a migration too
    (a fleet's target process): the signal is recorded as ours is, so a run it stops before
    `stop_on_signals` (connecting, loading env.py) names it, not SIGINT, and exits 128 + it."""
    _received.append(signum)
    raise Interrupted


def _handler(signum: int, _frame) -> None:
    _received.append(signum)
    for sig in SIGNALS:  # a second signal: the default action, at once
        signal.signal(sig, signal.SIG_DFL)
    raise Interrupted


@contextmanager
def stop_on_signals(cancel: Callable[[], None]) -> Iterator[None]:
    """SIGINT/SIGTERM cancel the running statement (via `cancel`) and stop the run."""
    if threading.current_thread() is not threading.main_thread():
        yield  # handlers can only be set from the main thread; an embedding app owns them
        return
    _received.clear()
    read_end, write_end = os.pipe()
    os.set_blocking(write_end, False)
    previous_fd = signal.set_wakeup_fd(write_end, warn_on_full_buffer=False)
    previous = {sig: signal.signal(sig, _handler) for sig in SIGNALS}
    watcher = threading.Thread(target=_watch, args=(read_end, cancel), daemon=True)
    watcher.start()
    try:
        yield
    finally:
        signal.set_wakeup_fd(previous_fd)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        os.close(write_end)  # ends the watcher's read
        watcher.join(timeout=1)
        os.close(read_end)


def _watch(read_end: int, cancel: Callable[[], None]) -> None:
    while os.read(read_end, 1):  # a byte per signal; b"" once the write end is closed
        with contextlib.suppress(Exception):  # nothing running, or the link is gone
            cancel()
