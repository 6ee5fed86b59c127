"""After migrating: is the database at head, seen from both endpoints, over TLS?

The pooled check matters on Neon: the app reads through PgBouncer, so the revision is
confirmed from the app's side too, not just from the connection that migrated.
"""

from __future__ import annotations

from dataclasses import dataclass

from app.db.figures import endpoint_figures, endpoint_text
from app.db.health import EndpointHealth, check_connection
from app.errors import HarnessError


@dataclass(frozen=True)
class Item:
    name: str
    ok: bool
    detail: str
    exit_code: int = 1  # used when not ok


def _endpoint(
    name: str, heads: tuple[str, ...], known: frozenset[str] | None, health: EndpointHealth | None
) -> Item:
    try:
        health = health or check_connection(name)  # type: ignore[arg-type]
    except HarnessError as err:
        return Item(name, False, str(err), err.exit_code)
    figures = endpoint_figures(health, heads, known)
    ssl_ok = health.ssl_in_use or health.local
    at_head = figures["revision_state"] == "at_head"
    invalid = health.invalid_indexes if name == "direct" else ()
    if not invalid:
        figures["invalid_indexes"] = []
    detail = endpoint_text(figures, health.local)
    if invalid:  # the same database behind both doors: said once, on direct
        detail += (
            " (a concurrent index build failed, or is running now: if no migration runs, "
            "DROP INDEX CONCURRENTLY each, then migrate again)"
        )
    return Item(name, at_head and ssl_ok and not invalid, detail)


def verify(
    heads: tuple[str, ...],
    known: frozenset[str] | None = None,
    direct: EndpointHealth | None = None,
) -> list[Item]:
    """The scripts' heads, and both endpoints at them; `known` (every revision id) tells
    a database ahead of this code from one behind it; `direct` reuses a fresh check."""
    scripts = Item(
        "scripts",
        len(heads) == 1,
        f"one head {heads[0]}"
        if len(heads) == 1
        else f"{len(heads)} heads ({', '.join(heads) or 'none'}); merge them with "
        "`alembic merge heads -m merge`",
    )
    return [
        scripts,
        _endpoint("direct", heads, known, direct),
        _endpoint("pooled", heads, known, None),
    ]
