"""After migrating: is the database at head, seen from both endpoints, over TLS?

The pooled check matters on Neon: the app reads through PgBouncer, so the revision is
confirmed from the app's side too, not just from the connection that migrated.
"""

from __future__ import annotations

from dataclasses import dataclass

from alembic.config import Config
from alembic.script import ScriptDirectory

from app.db.health import EndpointHealth, check_connection
from app.errors import HarnessError, UnreachableError


@dataclass(frozen=True)
class Item:
    name: str
    ok: bool
    detail: str
    exit_code: int = 1  # used when not ok


def _ssl(health: EndpointHealth) -> tuple[bool, str]:
    if health.ssl_in_use:
        return True, "SSL on"
    if health.local:
        return True, "SSL off (local)"
    return False, "SSL OFF on a non-local host"


def _endpoint(name: str, heads: tuple[str, ...]) -> Item:
    try:
        health = check_connection(name)  # type: ignore[arg-type]
    except HarnessError as err:
        code = 3 if isinstance(err, UnreachableError) else err.exit_code
        return Item(name, False, str(err), code)
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


def verify(config: Config) -> list[Item]:
    heads = tuple(sorted(ScriptDirectory.from_config(config).get_heads()))
    scripts = Item(
        "scripts",
        len(heads) == 1,
        f"one head {heads[0]}"
        if len(heads) == 1
        else f"{len(heads)} heads ({', '.join(heads) or 'none'}); merge them with "
        "`alembic merge heads -m merge`",
    )
    return [scripts, _endpoint("direct", heads), _endpoint("pooled", heads)]
