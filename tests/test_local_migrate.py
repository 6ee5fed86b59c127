"""The README's promise: with no DATABASE_URL, `make migrate` runs on the embedded server."""

from __future__ import annotations

import re

import pytest
from helpers import cli

HEAD = "f096d6eff8ee"


@pytest.mark.slow
def test_migrate_without_any_url_uses_the_embedded_server(harness_env, tmp_path):
    env = dict(harness_env, LOCAL_DB_DIR=str(tmp_path / "local"))
    env.pop("DATABASE_URL")
    try:
        first = cli("migrate", env=env)
        assert first.returncode == 0, first.stdout
        assert re.search(
            r"embedded local PostgreSQL \d+\.\d+ at 127\.0\.0\.1:\d+ \(started", first.stdout
        )
        assert "applied 1 revision(s)" in first.stdout
        assert "verify: direct   ok    at head" in first.stdout

        second = cli("migrate", env=env)
        assert second.returncode == 0, second.stdout
        assert "(already running;" in second.stdout
        assert f"already at head ({HEAD}); nothing to apply" in second.stdout
        assert (tmp_path / "local" / "pg" / "server.json").stat().st_mode & 0o077 == 0
    finally:
        down = cli("db-down", env=env)
    assert down.stdout.strip() == "db-down: local PostgreSQL stopped"
