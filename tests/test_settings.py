"""Settings: defaults, bounds, aliases, .env — and one line per invalid value."""

from __future__ import annotations

import pytest

from neon_migrate.errors import ConfigError
from neon_migrate.settings import load_settings


@pytest.fixture(autouse=True)
def clean_env(monkeypatch, tmp_path):
    """No variables from the outer environment, and a cwd with no .env."""
    import os

    for name in list(os.environ):
        if name.startswith(("DATABASE_URL", "DB_", "MIGRATION_", "LOCAL_DB_DIR")):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


def test_defaults_suit_neon():
    s = load_settings()
    assert (s.db_pool_size, s.db_max_overflow, s.db_pool_timeout) == (5, 10, 30)
    assert s.db_pool_recycle < 300  # replaced before Neon's default scale-to-zero
    assert s.db_serverless is False
    assert s.database_url is None and s.database_url_direct is None


@pytest.mark.parametrize(
    ("variable", "value", "allowed"),
    [
        ("DB_POOL_SIZE", "0", "from 1 to 100"),
        ("DB_POOL_SIZE", "many", "from 1 to 100"),
        ("DB_MAX_OVERFLOW", "-1", "from 0 to 200"),
        ("DB_POOL_TIMEOUT", "0", "more than 0 up to 600"),
        ("DB_POOL_RECYCLE", "5", "from 10 to 3600"),
        ("DB_SERVERLESS", "perhaps", "true or false"),
        ("DB_CONNECT_TIMEOUT", "0", "from 1 to 120"),
        ("MIGRATION_LOCK_TIMEOUT", "0", "more than 0 up to 600"),
        ("MIGRATION_STATEMENT_TIMEOUT", "-1", "from 0 to 86400"),
        ("MIGRATION_LOCK_WAIT", "99999", "from 0 to 3600"),
    ],
)
def test_invalid_value_names_variable_and_range(monkeypatch, variable, value, allowed):
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigError) as err:
        load_settings()
    assert str(err.value) == (
        f"{variable}={value!r} is invalid: allowed {allowed}. "
        "Fix: correct the variable in the environment or .env."
    )
    assert err.value.exit_code == 2


def test_several_invalid_values_in_one_line(monkeypatch):
    monkeypatch.setenv("DB_POOL_SIZE", "0")
    monkeypatch.setenv("MIGRATION_LOCK_WAIT", "-1")
    with pytest.raises(ConfigError) as err:
        load_settings()
    assert "\n" not in str(err.value)
    assert "DB_POOL_SIZE='0'" in str(err.value) and "MIGRATION_LOCK_WAIT='-1'" in str(err.value)


def test_dotenv_file_is_read_and_environment_wins(monkeypatch, tmp_path):
    (tmp_path / ".env").write_text(
        "DATABASE_URL=postgresql://u:pw@h/db\nDB_POOL_SIZE=7\nDB_SERVERLESS=true\n"
    )
    monkeypatch.setenv("DB_POOL_SIZE", "9")
    s = load_settings()
    assert s.database_url.get_secret_value() == "postgresql://u:pw@h/db"
    assert s.db_pool_size == 9
    assert s.db_serverless is True


def test_neon_unpooled_name_is_accepted(monkeypatch):
    monkeypatch.setenv("DATABASE_URL_UNPOOLED", "postgresql://u:pw@h/db")
    assert load_settings().database_url_direct.get_secret_value() == "postgresql://u:pw@h/db"


def test_blank_url_counts_as_unset(monkeypatch):
    monkeypatch.setenv("DATABASE_URL", "   ")
    assert load_settings().database_url is None


def test_url_never_in_repr(monkeypatch):
    monkeypatch.setenv("DATABASE_URL", "postgresql://u:hunter2@h/db")
    assert "hunter2" not in repr(load_settings())


def test_a_key_set_twice_in_dotenv_is_warned_with_both_lines(harness_env, db_url, tmp_path):
    """Before: the last one silently won (it pointed `status` at another database)."""
    from helpers import cli

    env = {k: v for k, v in harness_env.items() if k != "DATABASE_URL"}
    other = db_url.rsplit("/", 1)[0] + "/postgres"
    (tmp_path / "dotenv").mkdir()
    (tmp_path / "dotenv" / ".env").write_text(
        f"# the app\nDATABASE_URL={other}\nDB_POOL_SIZE=5\n\nDATABASE_URL={db_url}\n"
    )
    result = cli("status", env=env, cwd=tmp_path / "dotenv")
    assert result.returncode == 0, result.stdout
    assert (
        "warning: .env sets DATABASE_URL twice (line 2 and line 5): the one on line 5 is "
        "used; delete the other"
    ) in result.stdout
    assert "DB_POOL_SIZE twice" not in result.stdout
    password = db_url.split(":")[2].split("@")[0]
    assert password not in result.stdout
