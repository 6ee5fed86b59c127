"""What an engine's pool is doing: sizes, checkouts, waits, replaced connections.

Counted from SQLAlchemy's pool events, plus a pool class that times `connect()`, because
no event fires when a caller starts waiting for a connection. Every update is a few
integer operations under one lock, so the statistics stay on in production. The same
names are used by the health routes, the Prometheus metrics, `make migrate` and the
pre-deploy check (README, "Watching it in production").
"""

from __future__ import annotations

import bisect
import logging
import math
import threading
import time
from collections import deque
from dataclasses import dataclass

from sqlalchemy import Engine, event
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.pool import AsyncAdaptedQueuePool, NullPool, Pool, QueuePool

from neon_migrate import compat
from neon_migrate.observe.figures import ms
from neon_migrate.observe.leaks import CheckedOut, LeakWatch, caller_stack

log = logging.getLogger("neon_migrate.pool")

WINDOW_SECONDS = 60.0  # checkout wait percentiles cover this much recent time
WINDOW_MAX = 4096  # and at most this many checkouts
WARN_AT = 0.9  # share of a bounded pool's connections checked out that draws a warning
WARN_EVERY = 60.0  # seconds; at most one such warning per pool in this time
# Prometheus histogram bounds for the checkout wait, in seconds.
WAIT_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)


@dataclass(frozen=True)
class PoolSnapshot:
    name: str
    pool_class: str
    size: int  # connections the pool keeps (0 for NullPool)
    max_overflow: int  # extra connections it may open under load
    limit: int | None  # size + max_overflow; None when unbounded (NullPool)
    checked_in: int  # idle in the pool
    checked_out: int  # in use by the application
    overflow: int  # open beyond `size`
    waiting: int  # callers inside connect() right now
    checkouts: int  # since start
    checkout_timeouts: int  # callers that gave up waiting (pool exhausted)
    checkout_wait_p50_ms: float | None  # over the last WINDOW_SECONDS
    checkout_wait_p99_ms: float | None
    checkout_wait_max_ms: float | None
    connects: int  # new server connections opened
    invalidated: int  # connections thrown away after an error
    recycled: int  # replaced at checkout for age (DB_POOL_RECYCLE) or a pool-wide reset
    disconnects_recovered: int  # found dead at checkout and replaced, unseen by the caller
    disconnect_errors: int  # disconnects a statement ran into (the caller saw an error)
    leaked: int  # checked out longer than DB_POOL_LEAK_SECONDS right now
    leaks: int  # such connections since start
    leak_seconds: float  # 0 = leak warnings off

    def as_dict(self) -> dict:
        return dict(self.__dict__)


class PoolStats:
    """The figures for one engine's pool. Attach with `instrument(engine, name)`."""

    def __init__(self, name: str, leak_seconds: float = 0.0) -> None:
        self.name = name
        self.leak_seconds = leak_seconds
        self.pool: Pool | None = None
        # Reentrant: a leaked connection is checked in by a garbage-collection callback,
        # which can run in a thread that already holds this lock.
        self.lock = threading.RLock()
        self.checkouts = self.checkout_timeouts = self.waiting = 0
        self.connects = self.invalidated = self.recycled = 0
        self.disconnects_recovered = self.disconnect_errors = self.leaks = 0
        self.out: dict[int, CheckedOut] = {}  # id(connection record) -> who, since when
        self.waits: deque[tuple[float, float]] = deque(maxlen=WINDOW_MAX)
        self.wait_buckets = [0] * (len(WAIT_BUCKETS) + 1)  # the last one is +Inf
        self.wait_sum = 0.0
        self.warned_at = -WARN_EVERY  # time.monotonic() of the last near-exhaustion warning
        self.watch = LeakWatch(self, leak_seconds) if leak_seconds > 0 else None

    # --- fed by the pool ------------------------------------------------------------------
    def started_waiting(self) -> None:
        with self.lock:
            self.waiting += 1

    def waited(self, seconds: float, timed_out: bool) -> None:
        with self.lock:
            self.waiting -= 1
            self.waits.append((time.monotonic(), seconds))
            self.wait_buckets[bisect.bisect_left(WAIT_BUCKETS, seconds)] += 1
            self.wait_sum += seconds
            if timed_out:
                self.checkout_timeouts += 1
        if timed_out:
            log.error("%s pool exhausted: waited %.1f s; %s", self.name, seconds, self.usage())

    def _checkout(self, _dbapi, record, _proxy) -> None:
        stack = caller_stack() if self.watch else None
        now = time.monotonic()
        with self.lock:
            self.checkouts += 1
            self.out[id(record)] = CheckedOut(now, stack)
            limit = self.limit()
            warn = (
                bool(limit)
                and len(self.out) >= math.ceil(limit * WARN_AT)
                and now - self.warned_at >= WARN_EVERY
            )
            if warn:
                self.warned_at = now
        if warn:
            log.warning("%s pool near exhaustion: %s", self.name, self.usage(own=1))

    def _checkin(self, _dbapi, record) -> None:
        with self.lock:
            entry = self.out.pop(id(record), None)
        if entry is not None and entry.reported:
            log.info(
                "%s pool: the connection checked out at %s came back after %.1f s",
                self.name,
                entry.location(),
                time.monotonic() - entry.since,
            )

    def _detach(self, dbapi, record) -> None:
        """The connection leaves the pool for good; the record's next one is a new one."""
        record.stats_connected = False
        self._checkin(dbapi, record)

    def _connect(self, _dbapi, record) -> None:
        with self.lock:
            self.connects += 1
            if getattr(record, "stats_connected", False) and not getattr(
                record, "stats_invalidated", False
            ):
                self.recycled += 1
        record.stats_connected, record.stats_invalidated = True, False

    def _invalidate(self, _dbapi, record, exception) -> None:
        record.stats_invalidated = True
        with self.lock:
            self.invalidated += 1
            if isinstance(exception, DisconnectionError):  # raised at checkout: recovered
                self.disconnects_recovered += 1

    def _handle_error(self, context) -> None:
        if context.is_disconnect and not context.is_pre_ping:  # a ping's is recovered
            with self.lock:
                self.disconnect_errors += 1

    # --- read by reports ------------------------------------------------------------------
    def limit(self) -> int | None:
        pool = self.pool
        if not isinstance(pool, QueuePool) or compat.pool_max_overflow(pool) < 0:
            return None
        return pool.size() + compat.pool_max_overflow(pool)

    def usage(self, own: int = 0) -> str:
        """The numbers a warning needs, in the words the snapshot uses; `own` is the
        caller's own checkout, still inside connect() when it warns."""
        s = self.snapshot()
        limit = f"of {s.limit} " if s.limit is not None else ""
        return (
            f"{s.checked_out} {limit}checked out (size {s.size} + max overflow "
            f"{s.max_overflow}), {s.checked_in} checked in, {max(s.waiting - own, 0)} waiting, "
            f"checkout wait p99 {ms(s.checkout_wait_p99_ms)}"
        )

    def snapshot(self) -> PoolSnapshot:
        pool = self.pool
        queued = isinstance(pool, QueuePool)
        now = time.monotonic()
        with self.lock:
            waits = list(self.waits)
            entries = list(self.out.values())
            counters = (
                self.waiting,
                self.checkouts,
                self.checkout_timeouts,
                self.connects,
                self.invalidated,
                self.recycled,
                self.disconnects_recovered,
                self.disconnect_errors,
                self.leaks,
            )
        waiting, checkouts, timeouts, connects, invalidated, recycled, recovered, errors, leaks = (
            counters
        )
        recent = sorted(s for t, s in waits if now - t <= WINDOW_SECONDS)
        checked_out = len(entries)
        leaked = sum(1 for e in entries if e.reported)
        return PoolSnapshot(
            name=self.name,
            pool_class=type(pool).__name__.removeprefix("Measured"),
            size=pool.size() if queued else 0,
            max_overflow=max(compat.pool_max_overflow(pool), 0) if queued else 0,
            limit=self.limit(),
            checked_in=pool.checkedin() if queued else 0,
            checked_out=checked_out,
            overflow=max(pool.overflow(), 0) if queued else 0,
            waiting=waiting,
            checkouts=checkouts,
            checkout_timeouts=timeouts,
            checkout_wait_p50_ms=_percentile(recent, 0.50),
            checkout_wait_p99_ms=_percentile(recent, 0.99),
            checkout_wait_max_ms=round(recent[-1] * 1000, 3) if recent else None,
            connects=connects,
            invalidated=invalidated,
            recycled=recycled,
            disconnects_recovered=recovered,
            disconnect_errors=errors,
            leaked=leaked,
            leaks=leaks,
            leak_seconds=self.leak_seconds,
        )

    def histogram(self) -> tuple[list[tuple[float, int]], float]:
        """Cumulative (upper bound, count) pairs and the sum, for Prometheus."""
        with self.lock:
            counts, total = list(self.wait_buckets), self.wait_sum
        cumulative, running = [], 0
        for bound, count in zip((*WAIT_BUCKETS, math.inf), counts, strict=True):
            running += count
            cumulative.append((bound, running))
        return cumulative, total

    def close(self) -> None:
        if self.watch:
            self.watch.stop()
        with _LOCK:
            if _LIVE.get(self.name) is self:
                del _LIVE[self.name]


def _percentile(ordered: list[float], share: float) -> float | None:
    if not ordered:
        return None
    return round(ordered[min(len(ordered) - 1, math.ceil(share * len(ordered)) - 1)] * 1000, 3)


class _Measured:
    """Times each `connect()`: the wait a caller sees, queueing and connecting included."""

    stats: PoolStats | None = None

    def connect(self):
        stats = self.stats
        if stats is None:
            return super().connect()  # type: ignore[misc]
        stats.started_waiting()
        started = time.perf_counter()
        timed_out = False
        try:
            return super().connect()  # type: ignore[misc]
        except PoolTimeout:
            timed_out = True
            raise
        finally:
            stats.waited(time.perf_counter() - started, timed_out)

    def recreate(self):  # Engine.dispose() replaces the pool; the figures carry on
        pool = super().recreate()  # type: ignore[misc]
        pool.stats = self.stats
        if self.stats is not None:
            self.stats.pool = pool
        return pool


# Each logs under SQLAlchemy's own name for its base, so `sqlalchemy.pool` logging still works.
class MeasuredQueuePool(_Measured, QueuePool):
    _sqla_logger_namespace = "sqlalchemy.pool.impl.QueuePool"


class MeasuredNullPool(_Measured, NullPool):
    _sqla_logger_namespace = "sqlalchemy.pool.impl.NullPool"


class MeasuredAsyncAdaptedQueuePool(_Measured, AsyncAdaptedQueuePool):
    _sqla_logger_namespace = "sqlalchemy.pool.impl.AsyncAdaptedQueuePool"


MEASURED = {QueuePool: MeasuredQueuePool, NullPool: MeasuredNullPool}
MEASURED_ASYNC = {QueuePool: MeasuredAsyncAdaptedQueuePool, NullPool: MeasuredNullPool}

_LOCK = threading.Lock()
_LIVE: dict[str, PoolStats] = {}


def instrument(engine: Engine, name: str, leak_seconds: float = 0.0) -> PoolStats:
    """Count `engine`'s pool under `name` (one live PoolStats per name)."""
    pool = engine.pool
    if not isinstance(pool, _Measured):
        raise TypeError(f"{name}: build the engine with a Measured* poolclass")
    stats = PoolStats(name, leak_seconds)
    stats.pool, pool.stats = pool, stats
    event.listen(pool, "checkout", stats._checkout)
    event.listen(pool, "checkin", stats._checkin)
    event.listen(pool, "detach", stats._detach)
    event.listen(pool, "connect", stats._connect)
    event.listen(pool, "invalidate", stats._invalidate)
    event.listen(engine, "handle_error", stats._handle_error)
    with _LOCK:
        previous = _LIVE.pop(name, None)
        _LIVE[name] = stats
    if previous is not None:
        previous.close()
    if stats.watch:
        stats.watch.start()
    return stats


def all_stats() -> list[PoolStats]:
    with _LOCK:
        return list(_LIVE.values())
