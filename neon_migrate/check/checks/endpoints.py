"""`direct` and `pooled`: each endpoint answers, over TLS, with what /health/db reports."""

from __future__ import annotations

from neon_migrate import project
from neon_migrate.check.context import Context, Outcome
from neon_migrate.connection.health import check_connection
from neon_migrate.migrate.heads import graph
from neon_migrate.observe.figures import endpoint_figures, endpoint_text
from neon_migrate.observe.sizing import fleet_warning


def _check_endpoint(ctx: Context, endpoint: str) -> str:
    """The figures /health/db reports, under the same keys, in the check's details."""
    health = check_connection(endpoint)  # type: ignore[arg-type]
    ctx.health[endpoint] = health
    try:
        known, heads = graph(*project.config_files(ctx.config_file or None))
    except Exception:  # a broken graph: the `scripts` check says what is wrong with it
        known, heads = None, None
    figures = endpoint_figures(health, heads, known)
    if endpoint == "pooled":  # the same database: its indexes are the direct check's
        figures["invalid_indexes"] = []
    summary = endpoint_text(figures, health.local)
    if not health.ssl_in_use and not health.local:
        raise Outcome("fail", f"{summary}: TLS is required for a non-local host", **figures)
    if figures["invalid_indexes"]:  # make migrate's verify fails on them: so does the check
        raise Outcome(
            "fail",
            f"{summary}: a concurrent index build failed (or is running now); if no "
            "migration runs, DROP INDEX CONCURRENTLY each, then migrate again",
            **figures,
        )
    ctx.details[endpoint] = figures
    return summary


def check_direct(ctx: Context) -> str:
    return _check_endpoint(ctx, "direct")


def check_pooled(ctx: Context) -> str:
    """The app's endpoint; and whether the pools of DB_POOL_PROCESSES processes fit the
    server's ceiling (a warning when not: the build is fine, its sizing may not be)."""
    summary = _check_endpoint(ctx, "pooled")
    health = ctx.health["pooled"]
    if not health.max_connections:
        return summary
    warning, pools = fleet_warning(health.max_connections, health.reserved_connections)
    if warning:
        raise Outcome("warn", f"{summary}; {warning}", **ctx.details.pop("pooled"), pools=pools)
    ctx.details["pooled"]["pools"] = pools
    return summary
