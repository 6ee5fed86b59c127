"""The app side of the connection module: cached engines, sessions, endpoint health."""

from __future__ import annotations

import time

import psycopg
import pytest
from sqlalchemy import event, text
from sqlalchemy.pool import NullPool, QueuePool
from sqlmodel import select

from app.models import Account
from neon_migrate.connection.engines import (
    _replace_if_closed,
    closed_by_server,
    get_app_engine,
    get_migration_engine,
    reset_engines,
)
from neon_migrate.connection.health import check_connection
from neon_migrate.connection.session import get_session, session_scope

HEAD = "f096d6eff8ee"


def test_app_engine_is_built_once_with_the_configured_pool(harness_env):
    engine = get_app_engine()
    assert get_app_engine() is engine
    assert isinstance(engine.pool, QueuePool)
    assert engine.pool.size() == 5
    assert engine.pool._recycle == 240
    assert engine.pool._pre_ping is False  # no ping per checkout: a round trip per request
    assert event.contains(engine, "checkout", _replace_if_closed)


def test_a_connection_the_server_closed_is_seen_without_a_round_trip(harness_env, db_url):
    engine = get_app_engine()
    with engine.connect() as conn:
        raw = conn.connection.dbapi_connection
        assert closed_by_server(raw) is False
        with psycopg.connect(db_url, autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(%s)", (raw.get_backend_pid(),))
        deadline = time.monotonic() + 5
        while not closed_by_server(raw) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert closed_by_server(raw) is True
        conn.invalidate()
    with engine.connect() as conn:  # the pool hands out a working one
        assert conn.execute(text("SELECT 1")).scalar() == 1


def test_serverless_mode_uses_no_pool_in_process(harness_env, monkeypatch):
    monkeypatch.setenv("DB_SERVERLESS", "true")
    reset_engines()
    assert isinstance(get_app_engine().pool, NullPool)


def test_migration_engine_has_no_pool_and_names_itself(harness_env):
    engine = get_migration_engine()
    assert get_migration_engine() is engine
    assert isinstance(engine.pool, NullPool)
    with engine.connect() as conn:
        assert conn.execute(text("SHOW application_name")).scalar() == "neon-migrate"


@pytest.fixture
def migrated(db_at_head, harness_env):
    """At head: a copy of the chain applied once (tests/conftest.py's head_template)."""


def test_session_commits_on_success(migrated, db_url):
    with session_scope() as session:
        session.add(Account(email="a@example.com", display_name="A"))
    with psycopg.connect(db_url) as conn:  # another session sees it: it was committed
        row = conn.execute("SELECT email, created_at IS NOT NULL FROM account").fetchone()
    assert row == ("a@example.com", True)


def test_session_rolls_back_on_error(migrated, db_url):
    with pytest.raises(RuntimeError), session_scope() as session:
        session.add(Account(email="b@example.com", display_name="B"))
        session.flush()
        raise RuntimeError("request failed")
    with psycopg.connect(db_url) as conn:
        assert conn.execute("SELECT count(*) FROM account").fetchone() == (0,)


def test_session_dependency_is_a_generator_for_fastapi(migrated):
    dependency = get_session()
    session = next(dependency)
    assert session.exec(select(Account)).all() == []
    with pytest.raises(StopIteration):
        next(dependency)


def test_check_connection_reports_version_ssl_and_revision(migrated, pg_server):
    for endpoint in ("direct", "pooled"):
        health = check_connection(endpoint)
        assert health.revisions == (HEAD,)
        assert health.local is True
        assert health.ssl_in_use is pg_server.tls  # no sslmode given: libpq prefers TLS
        assert health.server_ssl is pg_server.tls
        assert health.server_version[:2].isdigit()
        assert health.latency_ms > 0


def test_check_connection_on_an_empty_database(harness_env):
    assert check_connection("direct").revisions == ()
