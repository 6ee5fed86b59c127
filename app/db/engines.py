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
from app.db.timeouts import startup_options
from app.settings import Settings, get_settings

APP_NAME = "app"
MIGRATION_APP_NAME = "neon-migrate"


def pool_options(settings: Settings) -> dict:
    """The app engines' pool (sync and async alike)."""
    if settings.db_serverless:
        return {"poolclass": NullPool}
    return {
        "pool_size": settings.db_pool_size,
        "max_overflow": settings.db_max_overflow,
        "pool_timeout": settings.db_pool_timeout,
        "pool_recycle": settings.db_pool_recycle,
        "pool_pre_ping": True,
    }


@lru_cache(maxsize=1)
def get_app_engine() -> Engine:
    """Pooled endpoint. No session state is ever set here: PgBouncer would leak it."""
    settings = get_settings()
    connect_args = {"connect_timeout": settings.db_connect_timeout, "application_name": APP_NAME}
    url = urls.to_sqlalchemy(get_endpoints().pooled)
    return create_engine(url, connect_args=connect_args, **pool_options(settings))


@lru_cache(maxsize=1)
def get_migration_engine() -> Engine:
    """Direct endpoint, no pool: a migration run holds one connection and then exits."""
    settings = get_settings()
    url = urls.to_sqlalchemy(get_endpoints().direct)  # resolve() refused a pooled host
    return create_engine(
        url,
        poolclass=NullPool,
        connect_args={
            "connect_timeout": settings.db_connect_timeout,
            "application_name": MIGRATION_APP_NAME,
            "options": startup_options(url, settings),
        },
    )


def reset_engines() -> None:
    """Forget cached settings, endpoints and engines (tests, or after changing the env).

    An async engine is forgotten but not disposed here: that needs its event loop.
    """
    import sys

    async_module = sys.modules.get("app.db.async_engine")
    if async_module is not None:
        async_module.get_async_app_engine.cache_clear()
    for cached in (get_app_engine, get_migration_engine):
        if cached.cache_info().currsize:
            cached().dispose()
        cached.cache_clear()
    get_endpoints.cache_clear()
    get_settings.cache_clear()
