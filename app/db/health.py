"""Check one endpoint: does it answer, how fast, over TLS, and at which revision.

"SSL in use" is read from the driver, the client's own side of the link: through a
pooler, `pg_stat_ssl` would describe the pooler's connection to the server, not ours.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Literal

from sqlalchemy import text

from app.db import urls
from app.db.connect import connect
from app.db.endpoints import get_endpoints
from app.db.engines import get_app_engine, get_migration_engine
from app.settings import get_settings

Endpoint = Literal["pooled", "direct"]


@dataclass(frozen=True)
class EndpointHealth:
    endpoint: Endpoint
    host: str
    local: bool
    latency_ms: float
    server_version: str
    ssl_in_use: bool
    revisions: tuple[str, ...]  # rows of alembic_version; () when the table is absent


def check_connection(endpoint: Endpoint) -> EndpointHealth:
    endpoints = get_endpoints()
    if endpoint == "pooled":
        engine, variable = get_app_engine(), endpoints.pooled_variable
    else:
        engine, variable = get_migration_engine(), endpoints.direct_variable
    started = time.perf_counter()
    retry_seconds = get_settings().db_connect_retry_seconds
    with connect(engine, retry_seconds=retry_seconds, variable=variable) as conn:
        version, has_table = conn.execute(
            text(
                "SELECT current_setting('server_version'), "
                "to_regclass('alembic_version') IS NOT NULL"
            )
        ).one()
        revisions: tuple[str, ...] = ()
        if has_table:
            revisions = tuple(
                sorted(conn.execute(text("SELECT version_num FROM alembic_version")).scalars())
            )
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
        revisions=revisions,
    )
