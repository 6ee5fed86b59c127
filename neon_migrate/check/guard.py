"""Keep a rehearsal on production from holding the app up longer than the check allows.

A rehearsal in a rolled-back transaction takes, on the live tables, the locks the real
migration will take, and holds each until the rollback: a revision's ACCESS EXCLUSIVE
lock lasts through its slow statements and through every later revision. The server's
own bounds (statement_timeout, idle_in_transaction_session_timeout, set by the caller on
the rehearsal's session) end one statement, or a session whose client went silent; they
do not see a lock held across several statements. This guard does: from a session of its
own it watches the rehearsal session's locks on tables the app can see, and when one that
blocks the app's reads or writes has been held for `limit` seconds it ends that session
(pg_terminate_backend), which releases every lock at once. What it saw is the finding.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

from sqlalchemy import text
from sqlalchemy.engine import Engine

from neon_migrate.check.locks import BLOCKS_READS, BLOCKS_WRITES, STRENGTH, WORDS

# Locks of one backend on tables other sessions can see: a table the rehearsal created is
# not committed, so it has no pg_class row for us and is left out by the join itself.
HELD = text(
    """
    SELECT c.relname, l.mode FROM pg_locks l
    JOIN pg_class c ON c.oid = l.relation
    JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE l.pid = :pid AND l.granted AND l.locktype = 'relation' AND c.relkind IN ('r', 'p')
      AND n.nspname NOT IN ('pg_catalog', 'information_schema')
    """
)


@dataclass
class Blocking:
    table: str
    mode: str  # the strongest seen
    since: float  # monotonic time it was first seen

    def words(self, limit: float) -> str:
        blocks = "reads and writes" if self.mode in BLOCKS_READS else "writes"
        return f"{WORDS[self.mode]} on {self.table} for more than {limit:g} s (blocks {blocks})"


@dataclass
class LockGuard:
    """Watches backend `pid` every `interval` seconds on a connection of `engine`'s."""

    engine: Engine = field(repr=False)
    pid: int
    limit: float
    interval: float = 0.05
    seen: dict[str, Blocking] = field(default_factory=dict)  # table -> its blocking lock
    # Holds that ended: a failed revision's savepoint is rolled back (its locks go) before
    # the rehearsal asks what it held, and the guard may have looked in between.
    released: dict[str, Blocking] = field(default_factory=dict)
    cut: Blocking | None = None  # the lock that made the guard end the session
    error: str | None = None  # the guard lost its own connection: it watched until then
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def __enter__(self) -> LockGuard:
        conn = self.engine.connect()  # before the rehearsal begins: never behind its locks
        self._thread = threading.Thread(target=self._run, args=(conn,), daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=1)  # on a silent link it ends by itself

    def strongest(self) -> Blocking | None:
        """The lock held longest among the strongest seen, held now or released since:
        what the finding names."""
        if self.cut is not None:
            return self.cut
        holds = [*self.seen.values(), *self.released.values()]
        if not holds:
            return None
        return max(holds, key=lambda b: (STRENGTH.index(b.mode), -b.since))

    def _run(self, conn) -> None:
        try:
            while not self._stop.is_set():
                rows = conn.execute(HELD, {"pid": self.pid}).all()
                conn.rollback()
                now = time.monotonic()
                held = {t: m for t, m in rows if m in BLOCKS_WRITES}
                for table in list(self.seen):
                    if table not in held:  # released (a rollback): a new hold starts anew
                        self.released[table] = self.seen.pop(table)
                for table, mode in held.items():
                    hold = self.seen.setdefault(table, Blocking(table, mode, now))
                    if STRENGTH.index(mode) > STRENGTH.index(hold.mode):
                        hold.mode = mode
                over = [h for h in self.seen.values() if now - h.since >= self.limit]
                if over:
                    self.cut = max(over, key=lambda b: STRENGTH.index(b.mode))
                    conn.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": self.pid})
                    conn.rollback()
                    return
                self._stop.wait(self.interval)
        except Exception as exc:  # its link is gone too: the server's own bounds remain
            self.error = " ".join(str(exc).split())[:200]
        finally:
            conn.close()
