"""The two engines: the app's (pooled URL) and the migrations' (direct URL).

Each is built once per process and cached: an engine owns a pool, and building one per
request (a common mistake) opens a new pool, and new connections, every time.

The app's pool does not ping each connection it hands out (a round trip per request on
a link that may be 20-100 ms). It recycles connections before Neon's idle suspend, and at
checkout looks, without a round trip, whether the server has closed the socket (as it
does when a compute suspends or a backend is terminated); such a connection is replaced.
"""

from __future__ import annotations

import select
from functools import lru_cache

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.pool import NullPool, QueuePool

from neon_migrate.connection import urls
from neon_migrate.connection.endpoints import get_endpoints
from neon_migrate.connection.targets import app_connect_args, migration_connect_args
from neon_migrate.observe.pool_stats import MEASURED, MeasuredNullPool, instrument
from neon_migrate.settings import Settings, get_settings


def pool_options(settings: Settings, measured: dict = MEASURED) -> dict:
    """The app engines' pool (sync and async alike), a class that times each checkout."""
    if settings.db_serverless:
        return {"poolclass": measured[NullPool]}
    return {
        "poolclass": measured[QueuePool],
        "pool_size": settings.db_pool_size,
        "max_overflow": settings.db_max_overflow,
        "pool_timeout": settings.db_pool_timeout,
        "pool_recycle": settings.db_pool_recycle,
    }


def closed_by_server(dbapi_connection) -> bool:
    """Whether the server has hung up on an idle connection, without a round trip: an idle
    connection has nothing to read unless the server sent its goodbye and closed."""
    poller = select.poll()
    poller.register(dbapi_connection.fileno(), select.POLLIN | select.POLLHUP | select.POLLERR)
    return bool(poller.poll(0))


def _replace_if_closed(dbapi_connection, _record, _proxy) -> None:
    if closed_by_server(dbapi_connection):
        raise DisconnectionError("the server closed this connection")  # the pool retries


@lru_cache(maxsize=1)
def get_app_engine() -> Engine:
    """Pooled endpoint. No session state is ever set here: PgBouncer would leak it."""
    url = urls.to_sqlalchemy(get_endpoints().pooled)
    settings = get_settings()
    engine = create_engine(url, connect_args=app_connect_args(), **pool_options(settings))
    event.listen(engine, "checkout", _replace_if_closed)
    instrument(engine, "app", settings.db_pool_leak_seconds)
    return engine


@lru_cache(maxsize=1)
def get_migration_engine() -> Engine:
    """Direct endpoint, no pool: a migration run holds one connection and then exits."""
    url = urls.to_sqlalchemy(get_endpoints().direct)  # resolve() refused a pooled host
    engine = create_engine(url, poolclass=MeasuredNullPool, connect_args=migration_connect_args())
    instrument(engine, "migrations")
    return engine


def reset_engines() -> None:
    """Forget cached settings, endpoints and engines (tests, or after changing the env).

    An async engine is forgotten but not disposed here: that needs its event loop.
    """
    import sys

    async_module = sys.modules.get("neon_migrate.connection.async_engine")
    if async_module is not None:
        cached = async_module.get_async_app_engine
        if cached.cache_info().currsize:
            cached().sync_engine.pool.stats.close()
        cached.cache_clear()
    for cached in (get_app_engine, get_migration_engine):
        if cached.cache_info().currsize:
            engine = cached()
            engine.dispose()
            engine.pool.stats.close()
        cached.cache_clear()
    get_endpoints.cache_clear()
    get_settings.cache_clear()
