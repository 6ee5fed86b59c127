"""What a migration does to the app: the table locks it holds, and for how long.

Static lint cannot see the data's size; a rehearsal on a copy can. While the real upgrade
runs there, a second session samples pg_locks every few milliseconds for the migrating
session (application_name neon-migrate) and attributes each sample to the revision that
was running, from the harness's own "applying" / "applied" lines. A lock seen across
samples is held from the first sighting to the last (plus one interval): short locks may
be missed, and they are not the ones that hurt.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

import psycopg2

from neon_migrate.connection.masking import mask_text, secrets_of
from neon_migrate.errors import UnreachableError

# Weakest first. Reads (SELECT) wait only for ACCESS EXCLUSIVE; writes (INSERT, UPDATE,
# DELETE take ROW EXCLUSIVE) wait for SHARE and everything stronger.
STRENGTH = [
    "AccessShareLock",
    "RowShareLock",
    "RowExclusiveLock",
    "ShareUpdateExclusiveLock",
    "ShareLock",
    "ShareRowExclusiveLock",
    "ExclusiveLock",
    "AccessExclusiveLock",
]
BLOCKS_WRITES = frozenset(STRENGTH[4:])
BLOCKS_READS = frozenset({"AccessExclusiveLock"})
WORDS = {  # as the lock modes are written in PostgreSQL's documentation
    "AccessShareLock": "ACCESS SHARE",
    "RowShareLock": "ROW SHARE",
    "RowExclusiveLock": "ROW EXCLUSIVE",
    "ShareUpdateExclusiveLock": "SHARE UPDATE EXCLUSIVE",
    "ShareLock": "SHARE",
    "ShareRowExclusiveLock": "SHARE ROW EXCLUSIVE",
    "ExclusiveLock": "EXCLUSIVE",
    "AccessExclusiveLock": "ACCESS EXCLUSIVE",
}

SAMPLE = """
    SELECT c.relname, l.mode
    FROM pg_locks l
    JOIN pg_stat_activity a ON a.pid = l.pid
    JOIN pg_class c ON c.oid = l.relation
    JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE a.application_name = 'neon-migrate' AND a.datname = current_database()
      AND l.granted AND l.locktype = 'relation' AND c.relkind IN ('r', 'p')
      AND n.nspname NOT IN ('pg_catalog', 'information_schema')
"""
TABLES = """
    SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE c.relkind IN ('r', 'p') AND n.nspname NOT IN ('pg_catalog', 'information_schema')
"""


@dataclass
class LockHold:
    revision: str
    table: str
    mode: str  # the strongest seen for this table in this revision
    first: float
    last: float
    existing: bool  # the table was there before the upgrade (the app may be using it)

    @property
    def seconds(self) -> float:
        return self.last - self.first

    @property
    def blocks(self) -> str | None:
        if self.mode in BLOCKS_READS:
            return "reads and writes"
        if self.mode in BLOCKS_WRITES:
            return "writes"
        return None

    def words(self) -> str:
        took = f"{self.seconds:.1f} s" if self.seconds >= 1 else f"{self.seconds * 1000:.0f} ms"
        return f"{WORDS[self.mode]} on {self.table} for {took}"


@dataclass
class LockSampler:
    """Samples the migrating session's table locks from its own connection, in a thread."""

    url: str = field(repr=False)  # a libpq DSN with the branch's password
    interval: float = 0.01
    current: str | None = None  # the revision running now, set by the caller
    holds: dict[tuple[str, str], LockHold] = field(default_factory=dict)
    error: str | None = None
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    _existing: frozenset[str] = frozenset()

    def start(self) -> None:
        try:
            conn = psycopg2.connect(
                self.url, application_name="neon-migrate-check-locks", connect_timeout=10
            )
        except psycopg2.Error as exc:
            raise UnreachableError(
                "could not connect to the rehearsal branch to watch its locks: "
                + mask_text(" ".join(str(exc).split()), secrets_of(self.url)),
                "check that the branch's endpoint accepts connections, then run the check again",
            ) from None
        conn.autocommit = True
        with conn.cursor() as cursor:
            cursor.execute("SET statement_timeout = '5s'")
            cursor.execute(TABLES)
            self._existing = frozenset(row[0] for row in cursor.fetchall())
        self._thread = threading.Thread(target=self._run, args=(conn,), daemon=True)
        self._thread.start()

    def stop(self) -> list[LockHold]:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        return sorted(self.holds.values(), key=lambda h: (h.first, h.table))

    def _run(self, conn) -> None:
        try:
            with conn.cursor() as cursor:
                while not self._stop.is_set():
                    cursor.execute(SAMPLE)
                    now, revision = time.monotonic(), self.current
                    if revision is not None:
                        for table, mode in cursor.fetchall():
                            self._seen(revision, table, mode, now)
                    self._stop.wait(self.interval)
        except psycopg2.Error as exc:  # the copy went away: what was sampled stands
            self.error = " ".join(str(exc).split())
        finally:
            conn.close()

    def _seen(self, revision: str, table: str, mode: str, now: float) -> None:
        hold = self.holds.get((revision, table))
        if hold is None:
            until = now + self.interval
            existing = table in self._existing
            self.holds[(revision, table)] = LockHold(revision, table, mode, now, until, existing)
            return
        hold.last = now + self.interval
        if STRENGTH.index(mode) > STRENGTH.index(hold.mode):
            hold.mode = mode


def too_long(holds: list[LockHold], max_seconds: float) -> list[LockHold]:
    """Locks on tables the app already has that block it longer than `max_seconds`."""
    return [h for h in holds if h.existing and h.blocks and h.seconds > max_seconds]
