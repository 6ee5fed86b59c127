"""The twin is not stricter than Neon: the extensions real chains create, and protocol-level
prepared statements through the pooled door (Neon's pooler: max_prepared_statements)."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import uuid

import psycopg
import pytest
from helpers import add_revision, cli

from neon_migrate.twin import provision
from neon_migrate.twin.local import LocalServerInfo
from neon_migrate.twin.pooler import LocalPooler, pgbouncer_path
from neon_migrate.twin.tls import ensure_certificates

HEAD = "f096d6eff8ee"
QUERY = "SELECT %s::int + 1"  # the same parametrised statement, 50 times
RUNS = 50


@pytest.mark.parametrize("name", provision.EXTENSIONS)
def test_each_extension_neon_offers_is_created_on_the_twin(db_url, name):
    """The bundled 17 (uuid-ossp built by the set-up) and LOCAL_PG_BIN_DIR's alike."""
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute(f'CREATE EXTENSION "{name}"')
        installed = conn.execute("SELECT extname FROM pg_extension").fetchall()
    assert (name,) in installed


def test_the_extensions_work_not_only_install(db_url):
    """uuid-ossp is a module built here: call it; pg_stat_statements needs preloading."""
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute('CREATE EXTENSION "uuid-ossp"; CREATE EXTENSION pg_stat_statements')
        v5 = conn.execute("SELECT uuid_generate_v5(uuid_ns_url(), 'https://neon.tech')")
        assert v5.fetchone()[0] == uuid.uuid5(uuid.NAMESPACE_URL, "https://neon.tech")
        v4, v1 = conn.execute("SELECT uuid_generate_v4(), uuid_generate_v1()").fetchone()
        assert v4.version == 4 and v1.version == 1
        assert conn.execute("SELECT count(*) >= 0 FROM pg_stat_statements").fetchone()[0]


def test_a_missing_extension_names_it_and_local_pg_bin_dir(project):
    add_revision(project, "r2", HEAD, 'CREATE EXTENSION "no_such_extension"')
    result = cli("migrate", env=project["env"])
    assert result.returncode == 1, result.stdout
    error = next(ln for ln in result.stdout.splitlines() if ln.startswith("error:"))
    assert 'extension "no_such_extension" is not installed on this PostgreSQL server' in error
    assert "LOCAL_PG_BIN_DIR" in error
    assert "fix the revision" not in error


@pytest.fixture
def prepared_door(pgbouncer, pooled_url) -> str:
    """The twin's pooled door, which must pass prepared statements (PgBouncer >= 1.21)."""
    version = provision.pgbouncer_version(pgbouncer)
    if not provision.prepares(version):
        reason = provision.pgbouncer_fallback(f"the pooler here is PgBouncer {version}")
        if os.environ.get("REQUIRE_PGBOUNCER") == "1":
            pytest.fail(f"REQUIRE_PGBOUNCER=1 but {reason}")
        pytest.skip(reason)
    return pooled_url


def psycopg_runs(url: str) -> list[int]:
    """Two clients in turn, psycopg 3 defaults (prepare_threshold 5): each prepares the
    query on whichever server connection the pooler hands it."""
    clients = [psycopg.connect(url, autocommit=True) for _ in range(2)]
    try:
        assert all(c.prepare_threshold == 5 for c in clients)  # the default, untouched
        return [clients[i % 2].execute(QUERY, (i,)).fetchone()[0] for i in range(RUNS)]
    finally:
        for client in clients:
            client.close()


def asyncpg_runs(url: str) -> list[int]:
    """asyncpg prepares every statement it runs (named, cached per connection)."""
    import asyncpg

    async def main() -> list[int]:
        clients = [await asyncpg.connect(url) for _ in range(2)]
        try:
            return [await clients[i % 2].fetchval("SELECT $1::int + 1", i) for i in range(RUNS)]
        finally:
            for client in clients:
                await client.close()

    return asyncio.run(main())


def test_psycopg3_defaults_run_50_times_through_the_pooled_door(prepared_door):
    assert psycopg_runs(prepared_door) == list(range(1, RUNS + 1))


def test_asyncpg_runs_50_times_through_the_pooled_door(prepared_door):
    assert asyncpg_runs(prepared_door) == list(range(1, RUNS + 1))


def test_the_setting_is_what_makes_it_work(pgbouncer, pg_server, postgresql, tmp_path):
    """The same pooler with max_prepared_statements = 0 (1.18's behaviour) fails the same
    runs: the tests above prove the setting, not luck in which server answered."""
    if not provision.prepares(provision.pgbouncer_version(pgbouncer)):
        pytest.skip("this PgBouncer has no max_prepared_statements to turn off")
    info = LocalServerInfo(
        host=pg_server.host, port=pg_server.port, user=pg_server.user,
        password=pg_server.password, database=postgresql.info.dbname, data_dir=tmp_path,
        log_file=tmp_path / "log", version="", started=False,
        certificates=ensure_certificates(tmp_path / "tls"), tls=pg_server.tls,
    )  # fmt: skip
    pooler = LocalPooler(tmp_path / "bouncer", extra={"max_prepared_statements": "0"})
    port = pooler.start(info).port
    try:
        url = pg_server.url(postgresql.info.dbname, port=port) + "?sslmode=require"
        with pytest.raises(psycopg.errors.Error, match="prepared statement"):
            psycopg_runs(url)
    finally:
        pooler.stop()


def test_the_twin_says_which_pgbouncer_it_runs(pgbouncer, pg_server):
    assert pgbouncer_path() == pgbouncer
    version = provision.pgbouncer_version(pgbouncer)
    assert version, f"{pgbouncer} --version did not say"
    if provision.prepares(version):
        built = provision.cached_pgbouncer()
        assert built is not None and str(built.path) == pgbouncer, "the cached build first"
        assert "built from Debian's source package pgbouncer" in built.how


def test_provision_without_the_tools_falls_back_in_one_line(tmp_path):
    """No apt-get on PATH (a machine that cannot build): one line saying so, and how to
    fix it; exit 0 for the set-up, 1 under --require (CI)."""
    env = dict(os.environ, NEON_MIGRATE_CACHE=str(tmp_path / "cache"), PATH=str(tmp_path))
    for flags, code in (([], 0), (["--require"], 1)):
        result = subprocess.run(
            [sys.executable, "-m", "neon_migrate.twin.provision", *flags],
            env=env, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert result.returncode == code, result.stdout + result.stderr
        first = result.stdout.splitlines()[0]
        assert first.startswith("provision: a PgBouncer with prepared statements (>= 1.21)")
        assert "Fix: run `python -m neon_migrate.twin.provision` once as root" in first


@pytest.mark.slow
def test_a_twin_that_cannot_build_says_so_and_its_pooled_door_is_stricter(harness_env, tmp_path):
    """Nothing cached and no apt-get: the twin starts on the installed PgBouncer (Debian 12's
    1.18 here) and says in one line that prepared statements fail there, and the fix."""
    system = shutil.which("pgbouncer", path="/usr/sbin:/usr/bin")
    if system is None or provision.prepares(provision.pgbouncer_version(system)):
        pytest.skip("needs an installed PgBouncer older than 1.21 (Debian 12's)")
    env = dict(harness_env, LOCAL_DB_DIR=str(tmp_path / "local"), PATH=str(tmp_path),
               NEON_MIGRATE_CACHE=str(tmp_path / "cache"))  # fmt: skip
    env.pop("DATABASE_URL")
    try:
        up = cli("db-up", "--env", env=env)
        assert up.returncode == 0, up.stdout
        fallback = [ln for ln in up.stdout.splitlines() if "could not be built" in ln]
        assert len(fallback) == 1, up.stdout
        assert "Fix: run `python -m neon_migrate.twin.provision` once as root" in fallback[0]
        version = provision.pgbouncer_version(system)
        assert f"PgBouncer {version} (transaction mode, TLS on, protocol-level prepared " in (
            up.stdout
        )
        pooled = next(ln for ln in up.stdout.splitlines() if ln.startswith("export DATABASE_URL="))
        with pytest.raises(psycopg.errors.Error, match="prepared statement"):
            psycopg_runs(pooled.split("=", 1)[1].strip("'"))
    finally:
        cli("db-down", env=env)


def test_the_async_app_engine_prepares_through_the_pooled_door(prepared_door, twin_env):
    """The async engine keeps psycopg 3's prepare_threshold: two pooled connections take
    turns, each query in its own transaction, so the pooler must follow each prepared
    statement onto whichever server connection it lends; the server shows it prepared."""
    from sqlalchemy import text

    from neon_migrate.connection.async_engine import get_async_app_engine

    async def main() -> tuple[list[int], list[int], int]:
        engine = get_async_app_engine()
        try:
            async with engine.connect() as first, engine.connect() as second:
                clients = (first, second)
                thresholds = []
                for client in clients:
                    raw = await client.get_raw_connection()
                    thresholds.append(raw.driver_connection.prepare_threshold)
                    await client.commit()
                answers = []
                for i in range(RUNS):
                    client = clients[i % 2]
                    answers.append((await client.execute(text("SELECT :n + 1"), {"n": i})).scalar())
                    await client.commit()
                await first.execute(text("SELECT :n + 1"), {"n": 0})  # the same server session
                prepared = await first.scalar(text(
                    "SELECT count(*) FROM pg_prepared_statements WHERE NOT from_sql"))  # fmt: skip
            return answers, thresholds, prepared
        finally:
            await engine.dispose()

    answers, thresholds, prepared = asyncio.run(main())
    assert thresholds == [5, 5]  # psycopg 3's default, untouched
    assert answers == list(range(1, RUNS + 1))
    assert prepared >= 1
