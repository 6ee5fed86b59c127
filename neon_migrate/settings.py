"""All configuration, read once from the environment and `.env`.

Bounds live here so a bad value fails at start-up with one line naming the variable
and the allowed range, instead of surfacing later as a driver error. URLs are
SecretStr so they never appear in a repr, a log line or a validation message.
"""

from __future__ import annotations

import logging
from functools import lru_cache
from pathlib import Path
from typing import Any

from annotated_types import Ge, Gt, Le
from pydantic import AliasChoices, Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from neon_migrate.errors import ConfigError

log = logging.getLogger("neon_migrate.settings")


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_file=".env", env_file_encoding="utf-8", extra="ignore", validate_default=True
    )

    # The app's URL: Neon's pooled (PgBouncer) endpoint.
    database_url: SecretStr | None = Field(None, validation_alias="DATABASE_URL")
    # The migrations' URL: Neon's direct endpoint. Neon's own name is DATABASE_URL_UNPOOLED.
    database_url_direct: SecretStr | None = Field(
        None, validation_alias=AliasChoices("DATABASE_URL_DIRECT", "DATABASE_URL_UNPOOLED")
    )

    # App engine pool. Defaults suit a small web service on a 0.25-1 CU compute.
    db_pool_size: int = Field(5, ge=1, le=100, validation_alias="DB_POOL_SIZE")
    db_max_overflow: int = Field(10, ge=0, le=200, validation_alias="DB_MAX_OVERFLOW")
    db_pool_timeout: float = Field(30, gt=0, le=600, validation_alias="DB_POOL_TIMEOUT")
    # Below Neon's default 300 s scale-to-zero, so idle connections are replaced before
    # the compute suspends and drops them.
    db_pool_recycle: int = Field(240, ge=10, le=3600, validation_alias="DB_POOL_RECYCLE")
    # Serverless functions: no pool in the process; PgBouncer on Neon does the pooling.
    db_serverless: bool = Field(False, validation_alias="DB_SERVERLESS")
    # Processes that each hold such a pool (replicas x workers, or function instances): verify
    # and the check warn when all their pools together exceed what the compute can serve.
    db_pool_processes: int = Field(1, ge=1, le=100_000, validation_alias="DB_POOL_PROCESSES")
    # Warn (once, naming the code that took it) about a connection checked out longer than
    # this many seconds; 0 turns the warning, and the stack capture it needs, off.
    db_pool_leak_seconds: float = Field(0, ge=0, le=86400, validation_alias="DB_POOL_LEAK_SECONDS")
    db_connect_timeout: int = Field(10, ge=1, le=120, validation_alias="DB_CONNECT_TIMEOUT")
    # Total time spent retrying transient connect errors (a compute waking up).
    db_connect_retry_seconds: float = Field(
        30, ge=0, le=600, validation_alias="DB_CONNECT_RETRY_SECONDS"
    )

    # GET /health/db answers within this many seconds, healthy or not.
    db_health_timeout: float = Field(2, gt=0, le=60, validation_alias="DB_HEALTH_TIMEOUT")

    # Migration session limits, in seconds (0 = no limit for the statement timeout).
    migration_lock_timeout: float = Field(
        5, gt=0, le=600, validation_alias="MIGRATION_LOCK_TIMEOUT"
    )
    migration_statement_timeout: float = Field(
        600, ge=0, le=86400, validation_alias="MIGRATION_STATEMENT_TIMEOUT"
    )
    # The server ends the migration session if it sits idle inside a transaction this long
    # (a client gone silent mid-revision), releasing its locks; 0 = never.
    migration_idle_timeout: float = Field(
        60, ge=0, le=3600, validation_alias="MIGRATION_IDLE_TIMEOUT"
    )
    # How long a run waits for another run's advisory lock before giving up.
    migration_lock_wait: float = Field(60, ge=0, le=3600, validation_alias="MIGRATION_LOCK_WAIT")
    # A revision that hits lock_timeout (a busy table) is rolled back and tried again this
    # many times, after a jittered backoff starting at MIGRATION_LOCK_RETRY_DELAY seconds.
    migration_lock_retries: int = Field(5, ge=0, le=100, validation_alias="MIGRATION_LOCK_RETRIES")
    migration_lock_retry_delay: float = Field(
        1, gt=0, le=60, validation_alias="MIGRATION_LOCK_RETRY_DELAY"
    )
    # A revision whose upgrade() renders to SQL goes to the server as one message (one
    # round trip) with its stamp and COMMIT; false: every revision statement by statement.
    migration_fast_path: bool = Field(True, validation_alias="MIGRATION_FAST_PATH")

    # The pre-deploy check rehearses on a Neon branch when it can reach Neon's API (the
    # names Neon's own tooling uses). Without them it rehearses on production, bounded.
    neon_api_key: SecretStr | None = Field(None, validation_alias="NEON_API_KEY")
    neon_project_id: str | None = Field(None, validation_alias="NEON_PROJECT_ID")
    neon_api_url: str = Field("https://console.neon.tech/api/v2", validation_alias="NEON_API_URL")
    # The check fails when a rehearsed revision holds a lock that blocks the app (reads or
    # writes) on an existing table longer than this; unset: MIGRATION_LOCK_TIMEOUT.
    check_max_lock_seconds: float | None = Field(
        None, gt=0, le=3600, validation_alias="CHECK_MAX_LOCK_SECONDS"
    )

    # Where the code runs. With no URL configured, only "development" (on a machine that
    # is not CI: the CI variable unset) gets the local twin; anywhere else a missing
    # DATABASE_URL (say, a CI secret not set) is an error, never a local database.
    app_env: str = Field("development", validation_alias="APP_ENV")
    # Where the local twin (server, pooler, certificates) lives when no URL is configured.
    local_db_dir: Path = Field(Path(".local"), validation_alias="LOCAL_DB_DIR")
    # Another PostgreSQL's bin folder for the local server (default: the embedded wheel's,
    # built without SSL; e.g. /usr/lib/postgresql/15/bin has TLS).
    local_pg_bin_dir: Path | None = Field(None, validation_alias="LOCAL_PG_BIN_DIR")

    @field_validator(
        "database_url",
        "database_url_direct",
        "local_pg_bin_dir",
        "neon_api_key",
        "neon_project_id",
        "check_max_lock_seconds",
        mode="before",
    )
    @classmethod
    def _blank_is_unset(cls, value: Any) -> Any:
        if isinstance(value, str) and not value.strip():
            return None
        return value.strip() if isinstance(value, str) else value


_SECRET_FIELDS = {"database_url", "database_url_direct", "neon_api_key"}


def env_name(field_name: str) -> str:
    alias = Settings.model_fields[field_name].validation_alias
    if isinstance(alias, AliasChoices):
        return str(alias.choices[0])
    return str(alias or field_name.upper())


def _allowed(field_name: str) -> str:
    field = Settings.model_fields[field_name]
    low = high = None
    low_strict = False
    for meta in field.metadata:
        if isinstance(meta, Ge):
            low = meta.ge
        elif isinstance(meta, Gt):
            low, low_strict = meta.gt, True
        elif isinstance(meta, Le):
            high = meta.le
    if field.annotation is bool:
        return "true or false"
    if "Path" in str(field.annotation):
        return "a folder path"
    if field.annotation is str:
        return "a word such as development or production"
    if low is not None and high is not None:
        return (
            f"{'more than' if low_strict else 'from'} {low} {'up ' if low_strict else ''}to {high}"
        )
    return "a valid value"


def _one_line(err: ValidationError) -> str:
    parts = []
    for item in err.errors():
        field_name = str(item["loc"][0]) if item["loc"] else ""
        if field_name not in Settings.model_fields:
            field_name = next(
                (n for n in Settings.model_fields if env_name(n) == field_name), field_name
            )
        if field_name in Settings.model_fields:
            shown = "(hidden)" if field_name in _SECRET_FIELDS else repr(item.get("input"))
            parts.append(
                f"{env_name(field_name)}={shown} is invalid: allowed {_allowed(field_name)}"
            )
        else:
            parts.append(item["msg"])
    return "; ".join(parts)


def warn_duplicate_keys(path: str = ".env") -> None:
    """A key set twice in .env: the last one silently wins (it once pointed `status` at
    another database). Say so, naming the key and both lines, never the values."""
    from dotenv.parser import parse_stream  # pydantic-settings reads .env with python-dotenv

    try:
        with open(path, encoding="utf-8") as handle:
            bindings = list(parse_stream(handle))
    except (OSError, UnicodeDecodeError):  # no .env; a non-UTF-8 one is refused below
        return
    seen: dict[str, int] = {}
    for binding in bindings:
        if binding.key is None:
            continue
        before_key = binding.original.string.split(binding.key, 1)[0]  # blank lines, comments
        line = binding.original.line + before_key.count("\n")
        if binding.key in seen:
            log.warning(
                "warning: .env sets %s twice (line %d and line %d): the one on line %d is "
                "used; delete the other",
                binding.key, seen[binding.key], line, line,
            )  # fmt: skip
        seen[binding.key] = line


def load_settings(**overrides: Any) -> Settings:
    """Read settings; any invalid value becomes one ConfigError line."""
    warn_duplicate_keys()
    try:
        return Settings(**overrides)
    except ValidationError as err:
        raise ConfigError(
            _one_line(err), "correct the variable in the environment or .env"
        ) from None
    except UnicodeDecodeError as err:  # pydantic-settings reads .env as UTF-8
        raise ConfigError(
            f".env is not UTF-8 text (byte 0x{err.object[err.start]:02x} at position {err.start})",
            "save .env as UTF-8 (for example: iconv -f latin1 -t utf-8 .env)",
        ) from None


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings. Tests call `get_settings.cache_clear()` after changing env."""
    return load_settings()
