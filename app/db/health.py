"""Check one endpoint: does it answer, how fast, over TLS, and at which revision.

"SSL in use" is read from the driver, the client's own side of the link. The server's
view (`pg_stat_ssl`) is reported too, but through a pooler it describes the pooler's own
connection to the server, not ours, so it never decides whether TLS is on.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Literal

from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from app.db import urls
from app.db.connect import connect, driver_message
from app.db.endpoints import get_endpoints
from app.db.engines import get_app_engine, get_migration_engine
from app.errors import HarnessError
from app.settings import get_settings

Endpoint = Literal["pooled", "direct"]


@dataclass(frozen=True)
class EndpointHealth:
    endpoint: Endpoint
    host: str
    local: bool
    latency_ms: float
    server_version: str
    ssl_in_use: bool  # the client's link, from the driver
    server_ssl: bool  # the link the server sees (pg_stat_ssl): the pooler's, through one
    revisions: tuple[str, ...]  # rows of alembic_version; () when the table is absent


def check_connection(endpoint: Endpoint) -> EndpointHealth:
    endpoints = get_endpoints()
    if endpoint == "pooled":
        engine, variable = get_app_engine(), endpoints.pooled_variable
    else:
        engine, variable = get_migration_engine(), endpoints.direct_variable
    started = time.perf_counter()
    retry_seconds = get_settings().db_connect_retry_seconds
    migrations = endpoint == "direct"
    with connect(
        engine, retry_seconds=retry_seconds, variable=variable, migrations=migrations
    ) as conn:
        try:
            version, server_ssl, revisions = _read(conn)
        except DBAPIError as exc:  # connected, but a query failed: permissions, odd table
            raise HarnessError(
                f"{endpoint} endpoint answered but the health query failed: {driver_message(exc)}",
                f"check the role's rights and the alembic_version table ({variable})",
            ) from None
        ssl_in_use = bool(conn.connection.dbapi_connection.info.ssl_in_use)
    latency_ms = (time.perf_counter() - started) * 1000
    host = engine.url.host or "localhost"
    return EndpointHealth(
        endpoint=endpoint,
        host=f"{host}:{engine.url.port or 5432}",
        local=urls.is_local_host(engine.url.host),
        latency_ms=latency_ms,
        server_version=version,
        ssl_in_use=ssl_in_use,
        server_ssl=bool(server_ssl),
        revisions=revisions,
    )


def _read(conn) -> tuple[str, bool, tuple[str, ...]]:
    """Server version, the server's view of SSL, and alembic_version's rows."""
    version, has_table, server_ssl = conn.execute(
        text(
            "SELECT current_setting('server_version'), "
            "to_regclass('alembic_version') IS NOT NULL, "
            "coalesce((SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()), false)"
        )
    ).one()
    revisions: tuple[str, ...] = ()
    if has_table:
        rows = conn.execute(text("SELECT version_num FROM alembic_version")).scalars()
        revisions = tuple(sorted(rows))
    return version, server_ssl, revisions
