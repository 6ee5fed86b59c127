"""After migrating: is the database at head, seen from both endpoints, over TLS?

The pooled check matters on Neon: the app reads through PgBouncer, so the revision is
confirmed from the app's side too, not just from the connection that migrated.
"""

from __future__ import annotations

from dataclasses import dataclass

from neon_migrate.connection.health import EndpointHealth, check_connection
from neon_migrate.errors import HarnessError
from neon_migrate.observe.figures import endpoint_figures, endpoint_text


@dataclass(frozen=True)
class Item:
    name: str
    ok: bool
    detail: str
    exit_code: int = 1  # used when not ok
    warning: bool = False  # ok, with something to say: never changes the exit code


def _endpoint(
    name: str, heads: tuple[str, ...], known: frozenset[str] | None, health: EndpointHealth | None
) -> tuple[Item, EndpointHealth | None]:
    try:
        health = health or check_connection(name)  # type: ignore[arg-type]
    except HarnessError as err:
        return Item(name, False, str(err), err.exit_code), None
    figures = endpoint_figures(health, heads, known)
    ssl_ok = health.ssl_in_use or health.local
    at_head = figures["revision_state"] == "at_head"
    invalid = health.invalid_indexes if name == "direct" else ()
    if not invalid:
        figures["invalid_indexes"] = []
    detail = endpoint_text(figures, health.local)
    if name == "pooled":  # what the app's sessions get, through the pooler
        detail += f" · app timeouts: {timeout_words(*health.timeouts)}"
    if invalid:  # the same database behind both doors: said once, on direct
        detail += (
            " (a concurrent index build failed, or is running now: if no migration runs, "
            "DROP INDEX CONCURRENTLY each, then migrate again)"
        )
    return Item(name, at_head and ssl_ok and not invalid, detail), health


def pools_item(health: EndpointHealth) -> Item:
    """The configured pools of the whole deployment (DB_POOL_PROCESSES of them) against
    the server's ceiling: a warning when they could exhaust it, never a failure, since
    a fleet rarely peaks all at once and the deploy should not stop for it."""
    from neon_migrate.observe.sizing import fleet_text, fleet_warning

    warning, figures = fleet_warning(health.max_connections, health.reserved_connections)
    return Item("pools", True, warning or f"fit: {fleet_text(figures)}", warning=bool(warning))


def timeout_words(statement: str, idle: str) -> str:
    if statement == "0" and idle == "0":
        return ("none (a runaway query holds its pooled connection until it ends; set them "
                "with a revision: README, App timeouts)")  # fmt: skip
    return f"statement {statement}, idle in transaction {idle}"


def verify(
    heads: tuple[str, ...],
    known: frozenset[str] | None = None,
    direct: EndpointHealth | None = None,
) -> list[Item]:
    """The scripts' heads, and both endpoints at them; `known` (every revision id) tells
    a database ahead of this code from one behind it; `direct` reuses a fresh check."""
    if len(heads) == 1:
        scripts = Item("scripts", True, f"one head {heads[0]}")
    elif not heads:
        scripts = Item("scripts", False, "no revisions yet: write the first with "
                       '`make revision m="create tables"`')  # fmt: skip
    else:
        scripts = Item("scripts", False, f"{len(heads)} heads ({', '.join(heads)}); merge "
                       "them with `alembic merge heads -m merge`")  # fmt: skip
    direct_item, direct = _endpoint("direct", heads, known, direct)
    pooled_item, _ = _endpoint("pooled", heads, known, None)
    items = [scripts, direct_item, pooled_item]
    if direct is not None and direct.max_connections:
        items.append(pools_item(direct))
    return items
