"""Check one endpoint: does it answer, how fast, over TLS, and at which revision.

"SSL in use" is read from the driver, the client's own side of the link. The server's
view (`pg_stat_ssl`) is reported too, but through a pooler it describes the pooler's own
connection to the server, not ours, so it never decides whether TLS is on.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import psycopg2
import psycopg2.errors

from neon_migrate import project
from neon_migrate.connection import urls
from neon_migrate.connection.connect import connect_raw, driver_message
from neon_migrate.connection.endpoints import get_endpoints
from neon_migrate.connection.targets import app_target, migration_target
from neon_migrate.connection.waiting import lost_connection
from neon_migrate.errors import HarnessError, UnreachableError
from neon_migrate.settings import get_settings

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
    revisions: tuple[str, ...]  # rows of the version table; () when the table is absent
    # Indexes left INVALID by a failed (or still running) concurrent build: they cost every
    # write and serve no read, and a revision creating them again fails with "already exists".
    invalid_indexes: tuple[str, ...] = ()
    # The session's statement and idle-in-transaction timeouts as the server applies them:
    # through the pooler, the app's (role defaults); on the direct door, the migrations'.
    timeouts: tuple[str, str] = ("0", "0")
    # The server's connection limit and the slots it keeps for superusers and, on
    # PostgreSQL 16+, for pg_use_reserved_connections (through a pooler, still the
    # server's): what the app's pools are measured against.
    max_connections: int = 0
    reserved_connections: int = 0


_READ = (
    "SELECT current_setting('server_version'), "
    "coalesce((SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()), false), "
    "ARRAY(SELECT i.indexrelid::regclass::text FROM pg_index i "
    "JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_namespace n ON n.oid = c.relnamespace "
    "WHERE NOT i.indisvalid AND n.nspname <> 'pg_catalog' AND n.nspname NOT LIKE 'pg_toast%' "
    "ORDER BY 1), "
    "current_setting('statement_timeout'), current_setting('idle_in_transaction_session_timeout'), "
    "current_setting('max_connections')::int, "
    "current_setting('superuser_reserved_connections')::int "
    "+ coalesce(nullif(current_setting('reserved_connections', true), '')::int, 0)"
)
_WITH_REVISIONS = ", ARRAY(SELECT version_num FROM {table} ORDER BY 1)"  # the version table


def check_connection(
    endpoint: Endpoint,
    *,
    retry_seconds: float | None = None,
    connect_timeout: int | None = None,
    opened: Callable[[object], None] | None = None,
) -> EndpointHealth:
    """Connect and ask everything in one query: on Neon, every round trip counts.

    Defaults retry a waking compute for DB_CONNECT_RETRY_SECONDS; `opened` is handed the
    connection before the query, so a caller with a deadline can cancel it.
    """
    endpoints = get_endpoints()
    table = project.version_table()  # alembic_version unless the project names another
    if endpoint == "pooled":
        (url, connect_args), variable = app_target(), endpoints.pooled_variable
    else:
        (url, connect_args), variable = migration_target(), endpoints.direct_variable
    if connect_timeout is not None:
        connect_args = connect_args | {"connect_timeout": connect_timeout}
    started = time.perf_counter()
    conn = connect_raw(
        url,
        connect_args,
        retry_seconds=get_settings().db_connect_retry_seconds
        if retry_seconds is None
        else retry_seconds,
        variable=variable,
        migrations=endpoint == "direct",
    )
    try:
        if opened is not None:
            opened(conn)  # may raise: the caller gave up; the connection is closed below
        version, server_ssl, invalid, timeouts, limits, revisions = _read(conn, table)
        ssl_in_use = bool(conn.info.ssl_in_use)
    except psycopg2.Error as exc:  # connected, but the query failed: rights, an odd table
        if lost_connection(exc):  # ... or the link went away under it
            raise UnreachableError(
                f"the {endpoint} endpoint stopped answering: {driver_message(exc)}",
                f"check the network and the database ({variable})",
            ) from None
        raise HarnessError(
            f"{endpoint} endpoint answered but the health query failed: {driver_message(exc)}",
            f"check the role's rights and the {table} table ({variable})",
        ) from None
    finally:
        conn.close()
    return EndpointHealth(
        endpoint=endpoint,
        host=f"{url.host or 'localhost'}:{url.port}",
        local=urls.is_local_host(url.host),
        latency_ms=(time.perf_counter() - started) * 1000,
        server_version=version,
        ssl_in_use=ssl_in_use,
        server_ssl=bool(server_ssl),
        revisions=revisions,
        invalid_indexes=invalid,
        timeouts=timeouts,
        max_connections=limits[0],
        reserved_connections=limits[1],
    )


def _read(conn, table: project.VersionTable) -> tuple:
    """Server version, the server's view of SSL, invalid indexes, timeouts, connection
    limits, and the version table's rows."""
    with conn.cursor() as cursor:
        try:
            cursor.execute(_READ + _WITH_REVISIONS.format(table=table.sql))
            *row, revisions = cursor.fetchone()
        except psycopg2.errors.UndefinedTable:  # an empty database (autocommit: no rollback)
            cursor.execute(_READ)
            row, revisions = list(cursor.fetchone()), ()
    version, server_ssl, invalid, statement, idle, max_conn, reserved = row
    return (version, server_ssl, tuple(invalid), (statement, idle), (max_conn, reserved),
            tuple(revisions))  # fmt: skip
