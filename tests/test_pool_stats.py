"""Pool statistics and leak warnings on the app engine, against the real local pair."""

from __future__ import annotations

import asyncio
import logging
import re
import time

import psycopg2
import pytest
import sqlalchemy.exc
from sqlalchemy import text

from neon_migrate.connection.engines import get_app_engine, get_migration_engine, reset_engines
from neon_migrate.observe.pool_stats import all_stats

POOL_LOG = "neon_migrate.pool"


def stats(name: str = "app"):
    found = {s.name: s for s in all_stats()}
    return found[name]


@pytest.fixture
def pool_of(monkeypatch):
    def configure(size: int, overflow: int, **extra: str) -> None:
        monkeypatch.setenv("DB_POOL_SIZE", str(size))
        monkeypatch.setenv("DB_MAX_OVERFLOW", str(overflow))
        for name, value in extra.items():
            monkeypatch.setenv(name, value)
        reset_engines()

    return configure


def test_queue_pool_figures_through_the_pooler(twin_env, pool_of, caplog):
    pool_of(2, 1)
    engine = get_app_engine()
    caplog.set_level(logging.WARNING, POOL_LOG)
    held = [engine.connect() for _ in range(3)]
    for conn in held:
        assert conn.execute(text("SELECT 1")).scalar() == 1
    busy = stats().snapshot()
    assert (busy.size, busy.max_overflow, busy.limit) == (2, 1, 3)
    assert (busy.checked_out, busy.checked_in, busy.overflow) == (3, 0, 1)
    assert busy.checkouts == 3 and busy.connects == 3 and busy.waiting == 0
    assert busy.checkout_wait_p50_ms > 0 and busy.checkout_wait_p99_ms >= busy.checkout_wait_p50_ms
    warnings = [r.getMessage() for r in caplog.records if "near exhaustion" in r.getMessage()]
    assert len(warnings) == 1
    assert re.fullmatch(
        r"app pool near exhaustion: 3 of 3 checked out \(size 2 \+ max overflow 1\), "
        r"0 checked in, 0 waiting, checkout wait p99 \d+\.\d ms",
        warnings[0],
    ), warnings[0]
    for conn in held:
        conn.close()
    idle = stats().snapshot()
    assert (idle.checked_out, idle.checked_in, idle.overflow) == (0, 2, 0)
    with engine.connect() as conn:  # warm: no new connection, a quick checkout
        conn.execute(text("SELECT 1"))
    warm = stats().snapshot()
    assert warm.checkouts == 4 and warm.connects == 3 and warm.as_dict()["checkouts"] == 4


def test_exhausted_pool_counts_the_timeout_and_says_why(twin_env, pool_of, caplog):
    pool_of(1, 0, DB_POOL_TIMEOUT="0.3")
    engine = get_app_engine()
    caplog.set_level(logging.WARNING, POOL_LOG)
    with engine.connect(), pytest.raises(sqlalchemy.exc.TimeoutError), engine.connect():
        pass
    snapshot = stats().snapshot()
    assert snapshot.checkout_timeouts == 1 and snapshot.checkouts == 1
    assert snapshot.checkout_wait_max_ms >= 300
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1
    assert re.match(r"app pool exhausted: waited \d+\.\d s; 1 of 1 checked out", errors[0])


def test_serverless_null_pool_is_counted_alike(twin_env, monkeypatch):
    monkeypatch.setenv("DB_SERVERLESS", "true")
    reset_engines()
    engine = get_app_engine()
    with engine.connect() as conn:
        conn.execute(text("SELECT 1"))
        during = stats().snapshot()
    after = stats().snapshot()
    assert during.pool_class == "NullPool" and during.limit is None and during.size == 0
    assert during.checked_out == 1 and after.checked_out == 0
    assert after.checkouts == 1 and after.connects == 1 and after.checked_in == 0


def test_migration_engine_is_counted_under_its_own_name(twin_env):
    with get_migration_engine().connect() as conn:
        conn.execute(text("SELECT 1"))
    assert stats("migrations").snapshot().checkouts == 1


def _kill(direct_url: str, pid: int) -> None:
    """Terminate a backend and wait until it is gone (its socket closed)."""
    conn = psycopg2.connect(direct_url)
    conn.autocommit = True
    cursor = conn.cursor()
    cursor.execute("SELECT pg_terminate_backend(%s)", (pid,))
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        cursor.execute("SELECT count(*) FROM pg_stat_activity WHERE pid = %s", (pid,))
        if cursor.fetchone()[0] == 0:
            break
        time.sleep(0.02)
    conn.close()
    time.sleep(0.05)  # the closing FIN reaches our end of the socket


def test_a_dead_idle_connection_is_replaced_and_counted(harness_env, db_url, pool_of):
    """Direct door: a terminated backend closes our socket, seen at the next checkout."""
    pool_of(1, 0)
    engine = get_app_engine()
    with engine.connect() as conn:
        pid = conn.execute(text("SELECT pg_backend_pid()")).scalar()
    _kill(db_url, pid)
    with engine.connect() as conn:
        assert conn.execute(text("SELECT pg_backend_pid()")).scalar() != pid
    snapshot = stats().snapshot()
    assert snapshot.disconnects_recovered == 1 and snapshot.invalidated == 1
    assert snapshot.disconnect_errors == 0 and snapshot.connects == 2


def test_a_disconnect_mid_request_is_counted_as_an_error(harness_env, db_url, pool_of):
    pool_of(1, 0)
    engine = get_app_engine()
    with engine.connect() as conn:
        pid = conn.execute(text("SELECT pg_backend_pid()")).scalar()
        _kill(db_url, pid)
        with pytest.raises(sqlalchemy.exc.OperationalError):
            conn.execute(text("SELECT 1"))
    snapshot = stats().snapshot()
    assert snapshot.disconnect_errors == 1 and snapshot.invalidated == 1
    assert snapshot.disconnects_recovered == 0


def test_a_soft_invalidated_connection_is_recycled_at_checkout(twin_env, pool_of):
    pool_of(1, 0)
    engine = get_app_engine()
    with engine.connect() as conn:
        conn.connection.invalidate(soft=True)  # as DB_POOL_RECYCLE does when it expires
    time.sleep(0.05)
    with engine.connect() as conn:
        conn.execute(text("SELECT 1"))
    snapshot = stats().snapshot()
    assert snapshot.recycled == 1 and snapshot.connects == 2 and snapshot.invalidated == 0


def leak_a_connection(engine):
    """The deliberate leak: checked out and never given back."""
    conn = engine.connect()
    conn.execute(text("SELECT 1"))
    return conn


def test_a_leak_is_reported_once_naming_where_it_was_taken(twin_env, pool_of, caplog):
    pool_of(2, 0, DB_POOL_LEAK_SECONDS="0.3")
    engine = get_app_engine()
    caplog.set_level(logging.INFO, POOL_LOG)
    leaked = leak_a_connection(engine)
    with engine.connect() as conn:  # a well-behaved request meanwhile: never reported
        conn.execute(text("SELECT 1"))
    time.sleep(1.2)  # four times the threshold: still one warning
    reports = [r for r in caplog.records if "checked out for" in r.getMessage()]
    assert len(reports) == 1, [r.getMessage() for r in reports]
    message = reports[0].getMessage()
    assert reports[0].levelno == logging.WARNING
    assert "over DB_POOL_LEAK_SECONDS=0.3" in message
    assert "checked out at test_pool_stats.py:" in message or "tests/test_pool_stats.py:" in message
    assert "in leak_a_connection; stack:" in message
    assert "test_a_leak_is_reported_once_naming_where_it_was_taken" in message
    snapshot = stats().snapshot()
    assert snapshot.leaked == 1 and snapshot.leaks == 1 and snapshot.checked_out == 1
    leaked.close()
    assert stats().snapshot().leaked == 0
    assert any("came back after" in r.getMessage() for r in caplog.records)


def test_leak_warnings_off_record_no_stack_and_run_no_watcher(twin_env, pool_of):
    pool_of(2, 0)
    engine = get_app_engine()
    with engine.connect():
        entry = next(iter(stats().out.values()))
        assert entry.stack is None and "DB_POOL_LEAK_SECONDS" in entry.location()
    assert stats().watch is None


def test_async_engine_is_counted_as_app_async(twin_env):
    from neon_migrate.connection.async_engine import get_async_app_engine

    async def query() -> None:
        engine = get_async_app_engine()
        async with engine.connect() as conn:
            assert (await conn.execute(text("SELECT 1"))).scalar() == 1
        await engine.dispose()

    asyncio.run(query())
    snapshot = stats("app_async").snapshot()
    assert snapshot.checkouts == 1 and snapshot.pool_class == "AsyncAdaptedQueuePool"


def test_async_ping_that_finds_a_dead_connection_is_a_recovery_not_an_error(
    harness_env, db_url, pool_of
):
    from neon_migrate.connection.async_engine import get_async_app_engine

    pool_of(1, 0)

    async def scenario() -> None:
        engine = get_async_app_engine()
        async with engine.connect() as conn:
            pid = (await conn.execute(text("SELECT pg_backend_pid()"))).scalar()
        _kill(db_url, pid)
        async with engine.connect() as conn:  # the pre-ping fails, a new one answers
            assert (await conn.execute(text("SELECT pg_backend_pid()"))).scalar() != pid
        await engine.dispose()

    asyncio.run(scenario())
    snapshot = stats("app_async").snapshot()
    assert snapshot.disconnects_recovered == 1 and snapshot.disconnect_errors == 0


def test_async_leak_names_the_coroutine_that_took_it(twin_env, pool_of, caplog):
    from neon_migrate.connection.async_engine import get_async_app_engine

    pool_of(2, 0, DB_POOL_LEAK_SECONDS="0.2")
    caplog.set_level(logging.WARNING, POOL_LOG)

    async def hold_a_connection() -> None:
        engine = get_async_app_engine()
        async with engine.connect() as conn:
            await conn.execute(text("SELECT 1"))
            await asyncio.sleep(0.8)
        await engine.dispose()

    asyncio.run(hold_a_connection())
    reports = [r.getMessage() for r in caplog.records if "checked out for" in r.getMessage()]
    assert len(reports) == 1
    assert "in hold_a_connection; stack:" in reports[0], reports[0]
