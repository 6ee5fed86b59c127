"""One vocabulary for endpoint and pool figures, wherever they are shown.

`make migrate`, `make verify`, the pre-deploy check, `GET /health/db` and the Prometheus
metrics all describe the same few things (which endpoint, latency, SSL in use, revision,
checked out, checkout wait...). They take their keys and words from here, so a number read
in a deploy log can be found under the same name on the dashboard.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from neon_migrate.connection.health import EndpointHealth
    from neon_migrate.observe.pool_stats import PoolSnapshot


def revision_state(
    seen: tuple[str, ...], heads: tuple[str, ...] | None, known: frozenset[str] | None
) -> str:
    """at_head, behind (run the migrations), ahead (the database is newer than this code,
    as during a rolling deploy), or unknown (this code's revisions could not be read)."""
    if heads is None:
        return "unknown"
    if tuple(sorted(seen)) == tuple(sorted(heads)):
        return "at_head"
    if known is not None and any(revision not in known for revision in seen):
        return "ahead"
    return "behind"


def endpoint_figures(
    health: EndpointHealth,
    heads: tuple[str, ...] | None = None,
    known: frozenset[str] | None = None,
) -> dict:
    """The JSON form (health route, pre-deploy details). Never holds a URL or password."""
    return {
        "endpoint": health.endpoint,
        "host": health.host,
        "latency_ms": round(health.latency_ms, 1),
        "ssl_in_use": health.ssl_in_use,
        "server_ssl": health.server_ssl,
        "server_version": health.server_version.split()[0],
        "revisions": list(health.revisions),
        "heads": list(heads) if heads is not None else None,
        "revision_state": revision_state(health.revisions, heads, known),
        "invalid_indexes": list(health.invalid_indexes),
        "statement_timeout": health.timeouts[0],
        "idle_in_transaction_session_timeout": health.timeouts[1],
    }


def ssl_words(figures: dict, local: bool) -> str:
    server = f"server sees SSL {'on' if figures['server_ssl'] else 'off'}"
    if figures["ssl_in_use"]:
        return f"SSL in use ({server})"
    if local:
        return f"SSL not in use (local; {server})"
    return f"SSL NOT in use on a non-local host ({server})"


def revision_words(figures: dict) -> str:
    seen = ", ".join(figures["revisions"]) or "none (empty database)"
    heads = ", ".join(figures["heads"] or ()) or "none"
    state = figures["revision_state"]
    where = {
        "at_head": "at head",
        "behind": f"behind head {heads}",
        "ahead": f"ahead of head {heads}: unknown to this code",
        "unknown": "head unknown",
    }[state]
    return f"revision {seen} ({where})"


def endpoint_text(figures: dict, local: bool) -> str:
    """The one-line form (make migrate, make verify, the pre-deploy table)."""
    invalid = figures.get("invalid_indexes")
    return (
        f"{revision_words(figures)} · latency {figures['latency_ms']:.1f} ms · "
        f"{ssl_words(figures, local)} · PostgreSQL {figures['server_version']}"
        + (f" · INVALID indexes: {', '.join(invalid)}" if invalid else "")
    )


def ms(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1f} ms"


def pool_text(snapshot: PoolSnapshot) -> str:
    s = snapshot
    limit = f" of {s.limit}" if s.limit is not None else ""
    return (
        f"{s.name} pool ({s.pool_class}): {s.checked_out}{limit} checked out, "
        f"{s.checked_in} checked in, overflow {s.overflow}, {s.waiting} waiting · "
        f"checkouts {s.checkouts} · checkout wait p50 {ms(s.checkout_wait_p50_ms)} "
        f"p99 {ms(s.checkout_wait_p99_ms)} · connects {s.connects} · invalidated "
        f"{s.invalidated} · recycled {s.recycled} · disconnects recovered "
        f"{s.disconnects_recovered}"
    )
