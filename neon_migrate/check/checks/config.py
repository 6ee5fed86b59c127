"""`config`: the URLs pair as Neon needs them, TLS is asked for, libpq can reach Neon."""

from __future__ import annotations

import psycopg2.extensions

from neon_migrate.check.context import Context, Outcome
from neon_migrate.connection import urls
from neon_migrate.connection.endpoints import WEAK_SSLMODES, get_endpoints
from neon_migrate.settings import get_settings


def check_config(ctx: Context) -> str:
    get_settings()
    endpoints = get_endpoints()
    pair = endpoints.pair
    libpq = psycopg2.extensions.libpq_version()
    problems = []
    if pair.neon:
        if not urls.is_pooled(pair.pooled):
            problems.append(
                f"the app's URL ({urls.host_of(pair.pooled)}) is not the pooled "
                "endpoint: put the -pooler host in DATABASE_URL"
            )
        if libpq < 140000:
            problems.append(f"libpq {libpq // 10000} has no SNI, which Neon needs: use libpq 14+")
    for name, url in (("DATABASE_URL", pair.pooled), ("DATABASE_URL_DIRECT", pair.direct)):
        mode = urls.query_value(url, "sslmode")
        if not urls.is_local_host(urls.host_of(url)) and mode in WEAK_SSLMODES:
            problems.append(f"{name} has sslmode={mode}: use require or verify-full")
    if problems:
        raise Outcome("fail", "; ".join(problems), exit_code=2)
    where = "local twin" if endpoints.local else ("Neon" if pair.neon else "PostgreSQL")
    derived = f", {pair.derived} URL derived" if pair.derived else ""
    return (
        f"{where}: direct {urls.host_of(pair.direct)}, pooled {urls.host_of(pair.pooled)}"
        f"{derived}; libpq {libpq // 10000}.{libpq % 10000}"
    )
