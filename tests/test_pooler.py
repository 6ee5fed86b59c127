"""The app side through a real PgBouncer in transaction mode, as on Neon's pooled endpoint."""

from __future__ import annotations

import asyncio
import re
import time

import psycopg
import pytest
import sqlalchemy.exc
from helpers import alembic, cli, verify_line
from load import REQUESTS, THREADS, percentile, run_load
from proxy import FaultProxy
from sqlalchemy import text

from neon_migrate.connection.engines import get_app_engine, reset_engines
from neon_migrate.connection.session import autocommit_connection, session_scope
from neon_migrate.migrate.lock import LOCK_KEY

HEAD = "f096d6eff8ee"


def report(label: str, latencies: list[float], seconds: float) -> None:
    print(
        f"\nload {label}: {len(latencies) / seconds:.0f} req/s, "
        f"p50 {percentile(latencies, 50) * 1000:.2f} ms, "
        f"p99 {percentile(latencies, 99) * 1000:.2f} ms ({len(latencies)} requests)"
    )


@pytest.fixture
def small_pool(monkeypatch):
    monkeypatch.setenv("DB_POOL_SIZE", "4")
    monkeypatch.setenv("DB_MAX_OVERFLOW", "4")
    reset_engines()


@pytest.mark.slow
@pytest.mark.parametrize("door", ["pooled", "direct"])
def test_app_engine_under_load(twin_env, small_pool, monkeypatch, db_url, door):
    """32 threads x 50 requests on a pool of 4+4: no error, and every connection back."""
    if door == "direct":
        monkeypatch.setenv("DATABASE_URL", db_url)
        reset_engines()
    engine = get_app_engine()

    def request() -> None:
        with session_scope() as session:
            assert session.execute(text("SELECT 1")).scalar() == 1

    load = run_load(request)
    report(f"sync {door}", load.latencies, load.elapsed)
    assert load.errors == []
    assert len(load.latencies) == THREADS * REQUESTS
    assert engine.pool.checkedout() == 0
    assert engine.pool.checkedin() <= 8
    assert engine.pool.overflow() <= 0


def test_pool_exhaustion_is_the_library_timeout_not_a_hang(twin_env, monkeypatch):
    monkeypatch.setenv("DB_POOL_SIZE", "1")
    monkeypatch.setenv("DB_MAX_OVERFLOW", "0")
    monkeypatch.setenv("DB_POOL_TIMEOUT", "0.5")
    reset_engines()
    engine = get_app_engine()
    with engine.connect():
        started = time.monotonic()
        with pytest.raises(sqlalchemy.exc.TimeoutError), engine.connect():
            pass
        waited = time.monotonic() - started
    assert 0.4 < waited < 3
    with engine.connect() as conn:  # and the pool recovers
        assert conn.execute(text("SELECT 1")).scalar() == 1


SESSION_STATE = re.compile(
    r"^\s*(SET(?!\s+LOCAL)|RESET|DISCARD|LISTEN|PREPARE|DECLARE|CREATE\s+TEMP)", re.IGNORECASE
)


def test_module_issues_no_session_state_on_the_app_engine(harness_env, db_url, pg_server,
                                                         monkeypatch):  # fmt: skip
    """Watched on the wire (plain TCP, so readable), so that what the driver sends by
    itself counts too: SQLAlchemy's isolation-level reset is a SET sent inside psycopg2."""
    wire = FaultProxy(pg_server.port, record=True)
    try:
        url = db_url.replace(f":{pg_server.port}/", f":{wire.port}/") + "?sslmode=disable"
        monkeypatch.setenv("DATABASE_URL", url)
        reset_engines()
        for _ in range(3):
            with session_scope() as session:
                session.execute(text("SELECT 1"))
            with autocommit_connection() as conn:
                conn.execute(text("SELECT 1"))
        # simple-query messages: b"Q", length, SQL, NUL
        sent = [c[5:].split(b"\0")[0].decode() for c in wire.recorded if c[:1] == b"Q"]
    finally:
        wire.close()
    assert len([s for s in sent if s == "SELECT 1"]) == 6, sent
    assert [s for s in sent if SESSION_STATE.match(s)] == []


def test_transaction_scoped_setting_does_not_reach_the_next_request(twin_env):
    with session_scope() as session:
        session.execute(text("SELECT set_config('app.tenant', 'acme', true)"))
        assert session.execute(text("SELECT current_setting('app.tenant')")).scalar() == "acme"
    with session_scope() as session:
        seen = session.execute(text("SELECT current_setting('app.tenant', true)")).scalar()
    assert seen in (None, "")


def test_why_session_state_is_banned_it_leaks_to_other_clients(pooled_url):
    """Documents the hazard: a plain SET through PgBouncer reaches a *different* client."""
    with psycopg.connect(pooled_url, autocommit=True) as first:
        first.execute("SET statement_timeout = '4321ms'")
    with psycopg.connect(pooled_url, autocommit=True) as second:
        leaked = second.execute("SHOW statement_timeout").fetchone()[0]
        second.execute("RESET statement_timeout")  # leave the pooler's server clean
    assert leaked == "4321ms"


@pytest.mark.slow
def test_async_engine_under_load_through_the_pooler(twin_env, small_pool):
    from neon_migrate.connection.async_engine import get_async_app_engine, get_async_session

    async def main() -> tuple[list[float], list[BaseException], float, int]:
        latencies: list[float] = []
        errors: list[BaseException] = []

        async def worker() -> None:
            for _ in range(REQUESTS):
                started = time.perf_counter()
                try:
                    dependency = get_async_session()
                    session = await anext(dependency)
                    # the same statement many times: psycopg would prepare it after 5 runs
                    assert (await session.execute(text("SELECT 1"))).scalar() == 1
                    with pytest.raises(StopAsyncIteration):
                        await anext(dependency)
                except BaseException as exc:
                    errors.append(exc)
                latencies.append(time.perf_counter() - started)

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(THREADS)))
        elapsed = time.perf_counter() - started
        engine = get_async_app_engine()
        checked_out = engine.pool.checkedout()
        await engine.dispose()
        return latencies, errors, elapsed, checked_out

    latencies, errors, elapsed, checked_out = asyncio.run(main())
    report("async pooled", latencies, elapsed)
    assert errors == []
    assert len(latencies) == THREADS * REQUESTS
    assert checked_out == 0


def test_migrations_are_refused_on_the_pooled_url(twin_env, pooled_url):
    for command in (["cli", "migrate"], ["alembic", "upgrade", "head"]):
        runner = cli if command[0] == "cli" else alembic
        result = runner(*command[1:], env=dict(twin_env, DATABASE_URL_DIRECT=pooled_url))
        assert result.returncode != 0
        last = result.stdout.strip().splitlines()[-1]
        assert "is a connection pooler" in last
        # PgBouncer 1.18 says "...parameter: options"; 1.24 names the setting inside it
        assert re.search(r"unsupported startup parameter( in options)?: \w+", last), last
        assert "Fix: point DATABASE_URL_DIRECT at the direct endpoint" in last
    assert cli("migrate", env=dict(twin_env, DATABASE_URL_DIRECT=pooled_url)).returncode == 2


def test_why_migrations_need_the_direct_door_the_lock_excludes_nobody(pooled_url, db_url):
    """Documents the hazard: a session advisory lock taken through PgBouncer is not held
    by the client that took it, so a second client gets it too."""
    with (
        psycopg.connect(pooled_url, autocommit=True) as first,
        psycopg.connect(pooled_url, autocommit=True) as second,
    ):
        assert first.execute("SELECT pg_try_advisory_lock(%s)", (LOCK_KEY,)).fetchone()[0]
        assert second.execute("SELECT pg_try_advisory_lock(%s)", (LOCK_KEY,)).fetchone()[0]
        # Both "hold" it: it sits on one server connection that both were handed.
        first.execute("SELECT pg_advisory_unlock_all()")
    with (
        psycopg.connect(db_url, autocommit=True) as first,
        psycopg.connect(db_url, autocommit=True) as second,
    ):  # the direct door: the lock does exclude
        assert first.execute("SELECT pg_try_advisory_lock(%s)", (LOCK_KEY,)).fetchone()[0]
        assert not second.execute("SELECT pg_try_advisory_lock(%s)", (LOCK_KEY,)).fetchone()[0]


def test_verify_reports_the_revision_seen_through_the_pooler(twin_env, pg_server):
    assert alembic("upgrade", "head", env=twin_env).returncode == 0
    result = cli("verify", env=twin_env)
    assert result.returncode == 0, result.stdout
    pooled = verify_line(result.stdout, "pooled")
    direct = verify_line(result.stdout, "direct")
    assert f"ok    revision {HEAD} (at head) · latency " in pooled
    assert "SSL in use (server sees SSL" in pooled
    server_side = "on" if pg_server.tls else "off"
    assert f"server sees SSL {server_side}" in pooled  # the pooler's own link to the server
    expected = "SSL in use (server sees SSL on)" if pg_server.tls else "SSL not in use (local;"
    assert expected in direct
