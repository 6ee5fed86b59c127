"""`GET /health/db` and `GET /health/db/pool` for a FastAPI app (`pip install .[web]`).

    app.include_router(health_router())

The database check opens its own connection to the endpoint the app uses, so it reports
the database, not the app's pool; the pool has its own route. It answers within
DB_HEALTH_TIMEOUT whatever the database does, and answers 503 with a reason when the
database does not answer, or is behind the revisions this code expects (a readiness
probe then keeps new code off an old schema). A database *ahead* of the code is healthy:
that is every rolling deploy, where migrations run before the new code starts.

At most one check is in flight per process (neon_migrate.connection.probe.check_within): calls that
arrive meanwhile share its answer, or, once it has outlived its deadline, answer 503 at
once saying it is still stuck. A stalled database therefore costs one connection and at
most two threads, however often it is probed; the stuck check is ended in bounded time.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from neon_migrate import project
from neon_migrate.connection import urls
from neon_migrate.connection.endpoints import get_endpoints
from neon_migrate.connection.probe import check_within
from neon_migrate.errors import HarnessError
from neon_migrate.observe.figures import endpoint_figures
from neon_migrate.observe.pool_stats import all_stats
from neon_migrate.settings import get_settings
from neon_migrate.web.last_check import record

log = logging.getLogger("neon_migrate.web")
NO_STORE = {"Cache-Control": "no-store"}
Graph = tuple[frozenset[str], tuple[str, ...]]


def code_revisions(alembic_ini: str | Path | None = None) -> Graph | None:
    """This code's revision ids and heads (Alembic's answer, read once); None when the
    app has no readable Alembic configuration (its revision state is then `unknown`).

    Alembic's `ScriptDirectory` itself, not the tooling's faster reader: this runs once
    per process, at start-up, and the app's half imports none of the tooling."""
    ini, toml = project.config_files(alembic_ini)
    if ini is None and not project.has_tool_table(toml, "alembic"):
        return None
    from alembic.config import Config
    from alembic.script import ScriptDirectory
    from alembic.util import CommandError

    try:
        script = ScriptDirectory.from_config(Config(file_=ini, toml_file=toml))
        known = frozenset(s.revision for s in script.walk_revisions())
        return known, tuple(sorted(script.get_heads()))
    except Exception as err:  # a broken revision file: the app still serves, said once
        said = isinstance(err, HarnessError | CommandError)
        why = " ".join(str(err).split()) if said else type(err).__name__
        log.warning("/health/db cannot tell this code's head: %s", why)
        return None


def database_health(graph: Graph | None) -> tuple[dict, bool]:
    """The /health/db body and whether the database is healthy."""
    started = time.perf_counter()
    body: dict = {"status": "unhealthy", "reason": None, "endpoint": None, "host": None}
    try:
        body["timeout_s"] = timeout = get_settings().db_health_timeout
        endpoints = get_endpoints()
        kind = "pooled" if endpoints.pooled != endpoints.direct else "direct"
        body |= {"endpoint": kind, "host": urls.host_of(endpoints.pooled)}
        health = check_within("pooled", timeout)
    except Exception as err:  # a probe answers 503, never 500
        # A HarnessError is one line with its fix, any password scrubbed; anything else
        # is named by type only, as its text could quote a connection string.
        reason = str(err) if isinstance(err, HarnessError) else f"{type(err).__name__}"
        elapsed_ms = round((time.perf_counter() - started) * 1000, 1)
        body |= {"reason": reason, "latency_ms": elapsed_ms}
        record(False, None)
        return body, False
    known, heads = graph or (None, None)
    figures = endpoint_figures(health, heads, known) | {"endpoint": kind}
    reason = None
    if figures["revision_state"] == "behind":
        seen = ", ".join(health.revisions) or "no revision (empty database)"
        reason = (
            f"the database is at {seen}, behind this code's head {', '.join(heads or ())}: "
            "run the migrations (make migrate) before this code serves"
        )
    record(reason is None, health.latency_ms / 1000)
    body = {"status": "ok" if reason is None else "unhealthy", "reason": reason}
    return body | figures | {"timeout_s": timeout}, reason is None


def pool_health() -> dict:
    return {"pools": [stats.snapshot().as_dict() for stats in all_stats()]}


def health_router(alembic_ini: str | Path | None = None, prefix: str = "/health") -> APIRouter:
    """The two routes; `alembic_ini` (default: ALEMBIC_CONFIG or ./alembic.ini) tells
    which revisions this code expects."""
    graph = code_revisions(alembic_ini)
    router = APIRouter(prefix=prefix, tags=["health"])

    @router.get("/db")
    def db() -> JSONResponse:  # sync: FastAPI runs it on a worker thread
        body, healthy = database_health(graph)
        return JSONResponse(body, status_code=200 if healthy else 503, headers=NO_STORE)

    @router.get("/db/pool")
    def db_pool() -> JSONResponse:
        return JSONResponse(pool_health(), headers=NO_STORE)

    return router
