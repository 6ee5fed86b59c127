"""The README's promise: with no DATABASE_URL, `make migrate` runs on the local twin."""

from __future__ import annotations

import re

import pytest
from helpers import cli

from app.db.pooler import pgbouncer_path

HEAD = "f096d6eff8ee"


@pytest.mark.slow
def test_migrate_without_any_url_uses_the_embedded_server(harness_env, tmp_path):
    env = dict(harness_env, LOCAL_DB_DIR=str(tmp_path / "local"))
    env.pop("DATABASE_URL")
    try:
        first = cli("migrate", env=env)
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
        assert re.search(r"migrate: PgBouncer \(transaction mode, TLS on\) started", first.stdout)
        assert "db-down: PgBouncer stopped" in down.stdout
