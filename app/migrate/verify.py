"""After migrating: is the database at head, seen from both endpoints, over TLS?

The pooled check matters on Neon: the app reads through PgBouncer, so the revision is
confirmed from the app's side too, not just from the connection that migrated.
"""

from __future__ import annotations

from dataclasses import dataclass

from app.db.health import EndpointHealth, check_connection
from app.errors import HarnessError


@dataclass(frozen=True)
class Item:
    name: str
    ok: bool
    detail: str
    exit_code: int = 1  # used when not ok


def _ssl(health: EndpointHealth) -> tuple[bool, str]:
    server_side = f"server sees SSL {'on' if health.server_ssl else 'off'}"
    if health.ssl_in_use:
        return True, f"SSL on ({server_side})"
    if health.local:
        return True, f"SSL off (local; {server_side})"
    return False, f"SSL OFF on a non-local host ({server_side})"


def _endpoint(name: str, heads: tuple[str, ...], health: EndpointHealth | None) -> Item:
    try:
        health = health or check_connection(name)  # type: ignore[arg-type]
    except HarnessError as err:
        return Item(name, False, str(err), err.exit_code)
    ssl_ok, ssl_text = _ssl(health)
    seen = ", ".join(health.revisions) or "no revision (empty database)"
    at_head = health.revisions == heads
    detail = (
        f"{'at head' if at_head else 'NOT at head:'} {seen} · PostgreSQL "
        f"{health.server_version.split()[0]} · {ssl_text} · {health.latency_ms:.1f} ms"
    )
    if not at_head:
        detail += f" (head is {', '.join(heads) or 'none'})"
    return Item(name, at_head and ssl_ok, detail)


def verify(heads: tuple[str, ...], direct: EndpointHealth | None = None) -> list[Item]:
    """The scripts' heads, and both endpoints at them; `direct` reuses a fresh check."""
    scripts = Item(
        "scripts",
        len(heads) == 1,
        f"one head {heads[0]}"
        if len(heads) == 1
        else f"{len(heads)} heads ({', '.join(heads) or 'none'}); merge them with "
        "`alembic merge heads -m merge`",
    )
    return [scripts, _endpoint("direct", heads, direct), _endpoint("pooled", heads, None)]
