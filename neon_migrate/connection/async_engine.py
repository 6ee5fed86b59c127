"""The app engine for asyncio code (async FastAPI routes): psycopg 3 through the pooler.

PgBouncer in transaction mode cannot follow a server-side prepared statement from one
transaction to the next (Neon's pooler included, unless configured for it), and psycopg 3
prepares a query once it has run five times on a connection; `prepare_threshold=None`
turns that off. Imported only by async code, so sync users never load psycopg 3.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from functools import lru_cache

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, create_async_engine

from neon_migrate.connection import urls
from neon_migrate.connection.endpoints import get_endpoints
from neon_migrate.connection.engines import pool_options
from neon_migrate.connection.targets import APP_NAME, LIVENESS
from neon_migrate.observe.pool_stats import MEASURED_ASYNC, instrument
from neon_migrate.settings import get_settings


@lru_cache(maxsize=1)
def get_async_app_engine() -> AsyncEngine:
    settings = get_settings()
    url = urls.to_sqlalchemy(get_endpoints().pooled).set(drivername="postgresql+psycopg")
    connect_args = {
        "connect_timeout": settings.db_connect_timeout,
        "application_name": APP_NAME,
        "prepare_threshold": None,
    } | LIVENESS
    # The sync engine's socket check needs a blocking driver's file descriptor; here the
    # pool pings instead.
    options = pool_options(settings, MEASURED_ASYNC) | {"pool_pre_ping": not settings.db_serverless}
    engine = create_async_engine(url, connect_args=connect_args, **options)
    instrument(engine.sync_engine, "app_async", settings.db_pool_leak_seconds)
    return engine


async def get_async_session() -> AsyncIterator[AsyncSession]:
    """Request-scoped async session: commit on success, roll back on error."""
    async with AsyncSession(get_async_app_engine(), expire_on_commit=False) as session:
        try:
            yield session
            await session.commit()
        except BaseException:
            await session.rollback()
            raise
