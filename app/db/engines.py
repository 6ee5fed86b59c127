"""The two engines: the app's (pooled URL) and the migrations' (direct URL).

Each is built once per process and cached: an engine owns a pool, and building one per
request (a common mistake) opens a new pool, and new connections, every time.
"""

from __future__ import annotations

from functools import lru_cache

from sqlalchemy import Engine, create_engine
from sqlalchemy.pool import NullPool

from app.db import urls
from app.db.endpoints import get_endpoints
from app.errors import ConfigError
from app.settings import get_settings

APP_NAME = "app"
MIGRATION_APP_NAME = "neon-migrate"


def refuse_pooled(url: str) -> None:
    """Migrations need one real session (advisory lock, SET); a transaction pooler has none."""
    if urls.is_pooled(url):
        raise ConfigError(
            f"migrations cannot run through Neon's pooled endpoint {urls.host_of(url)} "
            "(PgBouncer in transaction mode breaks the session advisory lock and SET)",
            "set DATABASE_URL_DIRECT to the direct connection string (the same host without "
            "-pooler), or unset it so it is derived from DATABASE_URL",
        )


@lru_cache(maxsize=1)
def get_app_engine() -> Engine:
    """Pooled endpoint. No session state is ever set here: PgBouncer would leak it."""
    settings = get_settings()
    connect_args = {"connect_timeout": settings.db_connect_timeout, "application_name": APP_NAME}
    url = urls.to_sqlalchemy(get_endpoints().pooled)
    if settings.db_serverless:
        return create_engine(url, poolclass=NullPool, connect_args=connect_args)
    return create_engine(
        url,
        pool_size=settings.db_pool_size,
        max_overflow=settings.db_max_overflow,
        pool_timeout=settings.db_pool_timeout,
        pool_recycle=settings.db_pool_recycle,
        pool_pre_ping=True,
        connect_args=connect_args,
    )


@lru_cache(maxsize=1)
def get_migration_engine() -> Engine:
    """Direct endpoint, no pool: a migration run holds one connection and then exits."""
    settings = get_settings()
    direct = get_endpoints().direct
    refuse_pooled(direct)
    return create_engine(
        urls.to_sqlalchemy(direct),
        poolclass=NullPool,
        connect_args={
            "connect_timeout": settings.db_connect_timeout,
            "application_name": MIGRATION_APP_NAME,
        },
    )


def reset_engines() -> None:
    """Forget cached settings, endpoints and engines (tests, or after changing the env)."""
    for cached in (get_app_engine, get_migration_engine):
        if cached.cache_info().currsize:
            cached().dispose()
        cached.cache_clear()
    get_endpoints.cache_clear()
    get_settings.cache_clear()
