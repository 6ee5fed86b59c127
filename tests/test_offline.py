"""Offline SQL: produced with no database and no credentials, and it builds the same schema."""

from __future__ import annotations

import psycopg
import pytest
from helpers import alembic, psql, schema

HEAD = "f096d6eff8ee"


@pytest.fixture
def offline_sql(harness_env, tmp_path) -> str:
    env = dict(harness_env)
    env.pop("DATABASE_URL")
    result = alembic("upgrade", "head", "--sql", env=env)
    assert result.returncode == 0, result.stdout
    assert not (tmp_path / "unused-local").exists(), "offline mode must not start a server"
    return result.stdout


def test_timeouts_are_set_inside_every_transaction(offline_sql):
    statements = [s.strip() for s in offline_sql.split(";") if s.strip()]
    begins = [i for i, s in enumerate(statements) if s == "BEGIN"]
    assert begins, offline_sql
    for i in begins:
        assert statements[i + 1] == "SET LOCAL lock_timeout = '5000ms'"
        assert statements[i + 2] == "SET LOCAL statement_timeout = '600000ms'"
    assert statements.count("COMMIT") == len(begins)
    assert f"INSERT INTO alembic_version (version_num) VALUES ('{HEAD}')" in offline_sql


def test_offline_sql_applied_by_psql_equals_online_schema(
    offline_sql, harness_env, db_url, pg_server
):
    online_db = "online_twin"
    with psycopg.connect(pg_server.url("postgres"), autocommit=True) as admin:
        admin.execute(f"DROP DATABASE IF EXISTS {online_db}")
        admin.execute(f"CREATE DATABASE {online_db}")
    try:
        applied = psql(db_url, offline_sql)
        assert applied.returncode == 0, applied.stderr
        online = alembic(
            "upgrade", "head", env=dict(harness_env, DATABASE_URL=pg_server.url(online_db))
        )
        assert online.returncode == 0, online.stdout
        offline_schema, online_schema = schema(db_url), schema(pg_server.url(online_db))
        assert offline_schema == online_schema
        assert {row[0] for row in offline_schema["columns"]} == {
            "account",
            "project",
            "alembic_version",
            "neon_migrate_history",
        }
    finally:
        with psycopg.connect(pg_server.url("postgres"), autocommit=True) as admin:
            admin.execute(f"DROP DATABASE IF EXISTS {online_db} WITH (FORCE)")
