"""Online migrations through env.py, as `alembic` and `make migrate` run them."""

from __future__ import annotations

import subprocess
import sys
import time

import psycopg
import pytest
from alembic import command
from alembic.config import Config
from helpers import ROOT, WAITING_FOR_OUR_LOCK, alembic, cli, ends_within, schema
from sqlalchemy import create_engine, text
from sqlalchemy.pool import NullPool

from neon_migrate.migrate.history import CREATE
from neon_migrate.migrate.lock import LOCK_KEY

HEAD = "f096d6eff8ee"


def version_rows(url: str) -> list[str]:
    with psycopg.connect(url) as conn:
        if conn.execute("SELECT to_regclass('alembic_version')").fetchone()[0] is None:
            return []
        return [r[0] for r in conn.execute("SELECT version_num FROM alembic_version")]


def test_upgrade_then_downgrade_round_trip(harness_env, db_url):
    up = alembic("upgrade", "head", env=harness_env)
    assert up.returncode == 0, up.stdout
    assert f"applied  {HEAD}  create account and project" in up.stdout
    assert version_rows(db_url) == [HEAD]
    bookkeeping = {"alembic_version", "neon_migrate_history"}
    assert {r[0] for r in schema(db_url)["columns"]} == {"account", "project", *bookkeeping}

    down = alembic("downgrade", "-1", env=harness_env)
    assert down.returncode == 0, down.stdout
    assert f"reverted {HEAD}" in down.stdout
    assert version_rows(db_url) == []
    assert {r[0] for r in schema(db_url)["columns"]} == bookkeeping


def test_ddl_persists_after_the_connection_closes(harness_env, db_url):
    """Regression for the silent-rollback trap: SQL run before configure() autobegins."""
    command.upgrade(Config(str(ROOT / "alembic.ini")), "head")
    with psycopg.connect(db_url) as fresh:  # a different session sees committed DDL only
        assert fresh.execute("SELECT count(*) FROM account").fetchone() == (0,)
    assert version_rows(db_url) == [HEAD]


def test_given_connection_is_used_and_its_ddl_committed(harness_env, db_url):
    """`config.attributes["connection"]`, as pytest-alembic and embedding apps use it."""
    engine = create_engine(
        db_url.replace("postgresql://", "postgresql+psycopg2://"), poolclass=NullPool
    )
    config = Config(str(ROOT / "alembic.ini"))
    with engine.connect() as conn:
        config.attributes["connection"] = conn
        command.upgrade(config, "head")
        assert not conn.closed
        backend = conn.execute(text("SELECT pg_backend_pid()")).scalar()
    with psycopg.connect(db_url) as fresh:
        assert fresh.execute("SELECT to_regclass('project')").fetchone()[0] == "project"
        held = fresh.execute(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = %s", (backend,)
        ).fetchone()[0]
    assert held == 0, "the migration lock must be released when the run ends"


def test_session_timeouts_are_applied(harness_env, db_url, monkeypatch):
    """lock_timeout/statement_timeout as configured, on the connection Alembic is given."""
    monkeypatch.setenv("MIGRATION_LOCK_TIMEOUT", "2.5")
    monkeypatch.setenv("MIGRATION_STATEMENT_TIMEOUT", "90")
    from neon_migrate.connection.engines import reset_engines
    from neon_migrate.migrate.environment import migration_connection

    reset_engines()
    with migration_connection(Config()) as conn:
        assert not conn.in_transaction(), "our own statements must not leave a transaction open"
        assert conn.execute(text("SHOW lock_timeout")).scalar() == "2500ms"
        assert conn.execute(text("SHOW statement_timeout")).scalar() == "90s"


def test_second_run_is_a_noop_that_says_so(harness_env):
    first = cli("migrate", env=harness_env)
    assert first.returncode == 0, first.stdout
    assert "applied 1 revision(s)" in first.stdout
    second = cli("migrate", env=harness_env)
    assert second.returncode == 0, second.stdout
    assert f"already at head ({HEAD})" in second.stdout
    assert "applied " not in second.stdout
    assert "verify: direct   ok" in second.stdout
    assert "verify: pooled   ok" in second.stdout


def test_autogenerate_writes_no_empty_revision(harness_env):
    assert alembic("upgrade", "head", env=harness_env).returncode == 0
    before = sorted((ROOT / "migrations" / "versions").glob("*.py"))
    result = alembic("revision", "--autogenerate", "-m", "nothing", env=harness_env)
    assert result.returncode == 0, result.stdout
    assert "no revision written" in result.stdout
    assert sorted((ROOT / "migrations" / "versions").glob("*.py")) == before


def test_models_match_database_at_head(harness_env):
    assert alembic("upgrade", "head", env=harness_env).returncode == 0
    result = alembic("check", env=harness_env)
    assert result.returncode == 0, result.stdout
    assert "No new upgrade operations detected" in result.stdout


def test_current_shows_head(harness_env):
    assert alembic("upgrade", "head", env=harness_env).returncode == 0
    result = alembic("current", env=harness_env)
    assert result.returncode == 0, result.stdout
    assert f"{HEAD} (head)" in result.stdout


@pytest.mark.slow
def test_concurrent_upgrades_serialize_on_the_lock(harness_env, db_url):
    """Two runs at once: one applies, the other waits, then finds nothing to do."""
    env = dict(harness_env, MIGRATION_LOCK_WAIT="60")
    with psycopg.connect(db_url, autocommit=True) as holder:
        holder.execute("SELECT pg_advisory_lock(%s)", (LOCK_KEY,))
        runs = [
            subprocess.Popen(
                [sys.executable, "-m", "alembic", "upgrade", "head"],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
            for _ in range(2)
        ]
        deadline = time.monotonic() + 30
        while holder.execute(WAITING_FOR_OUR_LOCK).fetchone()[0] < 2:
            if time.monotonic() > deadline:
                for run in runs:
                    run.kill()
                pytest.fail("the two runs never queued on the migration lock")
            time.sleep(0.05)
        holder.execute("SELECT pg_advisory_unlock(%s)", (LOCK_KEY,))
        outputs = [run.communicate(timeout=60)[0] for run in runs]
    assert [run.returncode for run in runs] == [0, 0], outputs
    assert all("waiting up to 60s for the migration lock held by pid" in out for out in outputs)
    assert sum(out.count(f"applied  {HEAD}") for out in outputs) == 1, outputs
    assert version_rows(db_url) == [HEAD]


def test_lock_busy_fails_in_bounded_time_naming_the_holder(harness_env, db_url, monkeypatch):
    monkeypatch.setenv("MIGRATION_LOCK_WAIT", "1")
    env = dict(harness_env, MIGRATION_LOCK_WAIT="1")
    with psycopg.connect(db_url, autocommit=True) as holder:
        holder.execute("SET application_name = 'other-deploy'")
        holder.execute("SELECT pg_advisory_lock(%s)", (LOCK_KEY,))
        pid = holder.info.backend_pid
        started = time.monotonic()
        result = cli("migrate", env=env)
        elapsed = time.monotonic() - started
    assert result.returncode == 1, result.stdout
    assert elapsed >= 1
    ends_within(elapsed, 10, "giving up (MIGRATION_LOCK_WAIT is 1s)")
    last = result.stdout.strip().splitlines()[-1]
    assert last.startswith("error: the migration lock is held by pid")
    assert f"pid {pid} (application 'other-deploy'" in last
    assert "MIGRATION_LOCK_WAIT=1s" in last and "Fix:" in last
    assert version_rows(db_url) == []


def test_caller_transaction_gets_a_lock_and_timeouts_that_end_with_it(harness_env, db_url):
    """A connection handed over inside a transaction: nothing outlives that transaction."""
    engine = create_engine(db_url.replace("postgresql://", "postgresql+psycopg2://"),
                           poolclass=NullPool)  # fmt: skip
    config = Config(str(ROOT / "alembic.ini"))
    with engine.connect() as conn:
        with conn.begin():
            config.attributes["connection"] = conn
            command.upgrade(config, "head")
            assert conn.execute(text("SHOW lock_timeout")).scalar() == "5s"
        assert conn.execute(text("SHOW lock_timeout")).scalar() == "0"
        assert (
            conn.execute(text("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'")).scalar()
            == 0
        )
    assert version_rows(db_url) == [HEAD]


def test_caller_connection_gets_its_timeouts_back(harness_env, db_url):
    engine = create_engine(db_url.replace("postgresql://", "postgresql+psycopg2://"),
                           poolclass=NullPool)  # fmt: skip
    config = Config(str(ROOT / "alembic.ini"))
    with engine.connect() as conn:
        config.attributes["connection"] = conn
        command.upgrade(config, "head")
        assert conn.execute(text("SHOW lock_timeout")).scalar() == "0"
        assert conn.execute(text("SHOW statement_timeout")).scalar() == "0"


def test_caller_connection_gets_its_own_timeouts_back(harness_env, db_url):
    engine = create_engine(db_url.replace("postgresql://", "postgresql+psycopg2://"),
                           poolclass=NullPool)  # fmt: skip
    config = Config(str(ROOT / "alembic.ini"))
    with engine.connect() as conn:
        conn.execute(text("SET lock_timeout = '42s'"))
        conn.commit()
        config.attributes["connection"] = conn
        command.upgrade(config, "head")
        assert conn.execute(text("SHOW lock_timeout")).scalar() == "42s"


@pytest.mark.slow
def test_read_only_commands_do_not_queue_behind_a_migration(harness_env, db_url):
    assert alembic("upgrade", "head", env=harness_env).returncode == 0
    with psycopg.connect(db_url, autocommit=True) as holder:
        holder.execute("SELECT pg_advisory_lock(%s)", (LOCK_KEY,))
        started = time.monotonic()
        current = alembic("current", env=dict(harness_env, MIGRATION_LOCK_WAIT="30"))
        took = time.monotonic() - started
        downgrade = alembic("downgrade", "-1", env=dict(harness_env, MIGRATION_LOCK_WAIT="0"))
    assert current.returncode == 0 and f"{HEAD} (head)" in current.stdout
    ends_within(took, 10, "alembic current (MIGRATION_LOCK_WAIT is 30s)")
    assert "the migration lock is held by" in downgrade.stdout  # writers still queue


def test_a_first_run_racing_another_for_the_history_table_retries(harness_env, db_url):
    """Another session creates the history table while a first run creates it too: the run
    waits on that session's catalog row, gets its unique violation, and retries."""
    blocked = (
        "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
        "AND query LIKE '%CREATE TABLE IF NOT EXISTS neon_migrate_history%'"
    )
    with psycopg.connect(db_url) as other, psycopg.connect(db_url, autocommit=True) as watch:
        other.execute(CREATE)  # uncommitted: the run cannot see it, and waits on its row
        run = subprocess.Popen(
            [sys.executable, "-m", "alembic", "upgrade", "head"],
            env=harness_env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        deadline = time.monotonic() + 30
        while watch.execute(blocked).fetchone()[0] == 0:
            if time.monotonic() > deadline or run.poll() is not None:
                run.kill()
                pytest.fail("the run never waited on the other table: " + run.communicate()[0])
            time.sleep(0.05)
        other.commit()
        output = run.communicate(timeout=60)[0]
    assert run.returncode == 0, output
    assert f"applied  {HEAD}" in output
    assert version_rows(db_url) == [HEAD]


def test_a_role_that_may_not_create_the_history_table_is_told_so(harness_env, db_url):
    """PostgreSQL 15+ lets only the owner create in public: the first run's history table
    fails with one line naming it and the grant, no traceback, and no lock left held."""
    with psycopg.connect(db_url, autocommit=True) as admin:
        admin.execute("DROP ROLE IF EXISTS nocreate")
        admin.execute("CREATE ROLE nocreate LOGIN PASSWORD 'nocreate-pw'")
        admin.execute("REVOKE CREATE ON SCHEMA public FROM PUBLIC")
    at = db_url.split("@")[1]
    env = dict(harness_env, DATABASE_URL=f"postgresql://nocreate:nocreate-pw@{at}")
    result = cli("migrate", env=env)
    assert result.returncode == 2, result.stdout
    assert "the migration role may not create neon_migrate_history" in result.stdout
    assert "GRANT CREATE ON SCHEMA public" in result.stdout and "Traceback" not in result.stdout
    assert "nocreate-pw" not in result.stdout
    with psycopg.connect(db_url) as conn:
        locks = conn.execute("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'")
        assert locks.fetchone() == (0,)
