"""The README's promise: with no DATABASE_URL, `make migrate` runs on the local twin."""

from __future__ import annotations

import re

import pytest
from helpers import cli

from neon_migrate.twin.pooler import pgbouncer_path

HEAD = "f096d6eff8ee"


@pytest.mark.slow
def test_migrate_without_any_url_uses_the_embedded_server(harness_env, tmp_path):
    env = dict(harness_env, LOCAL_DB_DIR=str(tmp_path / "local"))
    env.pop("DATABASE_URL")
    try:
        first = cli("-v", "migrate", env=env)  # -v: the pool lines too
        assert first.returncode == 0, first.stdout
        started = r"migrate: local PostgreSQL \d+\.\d+ \(TLS [^)]+\) started at 127\.0\.0\.1:\d+"
        assert re.search(started, first.stdout), first.stdout
        assert "applied 1 revision(s)" in first.stdout
        assert f"verify: direct   ok    revision {HEAD} (at head)" in first.stdout
        assert "migrate: migrations pool (NullPool): 0 checked out" in first.stdout

        second = cli("migrate", env=env)
        assert second.returncode == 0, second.stdout
        assert re.search(r"migrate: local PostgreSQL .* already running at", second.stdout)
        assert f"already at head ({HEAD}); nothing to apply" in second.stdout
        assert (tmp_path / "local" / "pg" / "server.json").stat().st_mode & 0o077 == 0
    finally:
        down = cli("db-down", env=env)
    assert "db-down: local PostgreSQL stopped" in down.stdout
    if pgbouncer_path():
        pooler = r"migrate: PgBouncer [\d.]+ \(transaction mode, TLS on, [^)]*\) started"
        assert re.search(pooler, first.stdout), first.stdout
        assert "db-down: PgBouncer stopped" in down.stdout


@pytest.mark.parametrize(
    ("setting", "why"),
    [({"CI": "true"}, "this is CI (the CI variable is set)"),
     ({"APP_ENV": "production"}, "APP_ENV is 'production'")],
    ids=["CI", "production"],
)  # fmt: skip
@pytest.mark.parametrize("command", [["migrate"], ["check"], ["verify"]], ids=" ".join)
def test_a_missing_url_outside_local_development_is_an_error(harness_env, tmp_path, setting,
                                                             why, command):  # fmt: skip
    """A missing CI secret must fail the job, not migrate a local database and pass."""
    env = dict(harness_env, LOCAL_DB_DIR=str(tmp_path / "local"), DATABASE_URL="", **setting)
    result = cli(*command, env=env)
    assert result.returncode == 2, result.stdout
    assert f"DATABASE_URL is not set, and {why}" in result.stdout
    assert "Fix: set DATABASE_URL" in result.stdout
    assert not (tmp_path / "local").exists(), "nothing may be started"


def test_the_app_never_starts_a_server(harness_env, tmp_path):
    """Outside the CLI (the web app, API callers) a missing URL is an error, even in local
    development: only `make db-up` and the CLI's commands start the twin."""
    import subprocess
    import sys

    env = dict(harness_env, LOCAL_DB_DIR=str(tmp_path / "local"))
    env.pop("DATABASE_URL")
    code = (
        "from neon_migrate.connection.engines import get_app_engine\n"
        "from neon_migrate.errors import ConfigError\n"
        "try:\n    get_app_engine()\nexcept ConfigError as err:\n    print(err)\n"
        "import sys\nprint(sorted(m for m in sys.modules if m.startswith('neon_migrate.twin')))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                            text=True, timeout=60)  # fmt: skip
    why = "DATABASE_URL is not set, and only the command line starts or finds the local twin"
    assert why in result.stdout, result
    assert not (tmp_path / "local").exists()
    assert result.stdout.splitlines()[-1] == "[]"  # nor was the twin's code loaded
