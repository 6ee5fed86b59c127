"""The app engine for asyncio code (async FastAPI routes): psycopg 3 through the pooler.

psycopg 3 keeps its default and prepares a query once it has run five times on a
connection (protocol-level prepared statements, which save the server parsing and
planning it again). Neon's pooler follows them from one transaction to the next
(PgBouncer >= 1.21 with max_prepared_statements), and so does the twin's; only SQL
`PREPARE` breaks there. Imported only by async code, so sync users never load psycopg 3.
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
