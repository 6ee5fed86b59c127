"""Start-up: commands import only what they use (the heads reader is tests/test_heads.py).
Checked by what is imported, not by timing."""

from __future__ import annotations

import subprocess
import sys

from helpers import alembic

HEAVY = ("sqlalchemy", "alembic", "sqlmodel", "cryptography", "app.models")


def imported(args: list[str], env: dict) -> set[str]:
    """The heavy packages a command imports (top-level names), from -X importtime."""
    result = subprocess.run(
        [sys.executable, "-X", "importtime", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    names = {line.rsplit("|", 1)[-1].strip() for line in result.stderr.splitlines()}
    return {name for name in names if name in HEAVY}


def test_help_imports_nothing_heavy(harness_env):
    assert imported(["-m", "neon_migrate.cli", "--help"], harness_env) == set()


def test_migrate_at_head_needs_neither_sqlalchemy_nor_alembic(harness_env):
    assert alembic("upgrade", "head", env=harness_env).returncode == 0
    assert imported(["-m", "neon_migrate.cli", "migrate"], harness_env) == set()


def test_read_only_commands_do_not_load_the_models(harness_env):
    """The models shape DDL (their naming convention); `alembic current` sends none."""
    assert alembic("upgrade", "head", env=harness_env).returncode == 0
    loaded = imported(["-m", "alembic", "current"], harness_env)
    assert "app.models" not in loaded and "sqlmodel" not in loaded
