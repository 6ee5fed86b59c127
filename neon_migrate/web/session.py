"""The request session for FastAPI routes: committed before the response is sent.

    from neon_migrate.web.session import SessionDep

    @app.post("/accounts")
    def create(body: AccountCreate, session: SessionDep) -> AccountRead: ...

Since FastAPI 0.118 the code after `yield` in a dependency runs *after* the response has
been sent, unless the dependency is declared with `scope="function"` (FastAPI >= 0.121).
For `get_session` that code is the COMMIT. With a plain `Depends(get_session)`, a COMMIT
that fails (a deferred constraint, a serialization failure, a connection dropped by
Neon's pooler) reaches the client as the 200 already sent, and the write is lost.
`SessionDep` commits first, so the client gets the error (500) instead, and the
connection goes back to the pool before a slow client has read the body.

`neon_migrate.connection` does not import FastAPI, so the alias lives here (`.[web]`).
"""

from __future__ import annotations

import logging
from typing import Annotated

from fastapi import Depends, FastAPI
from sqlmodel import Session

from neon_migrate.connection.session import get_session

log = logging.getLogger("neon_migrate.web")

SessionDep = Annotated[Session, Depends(get_session, scope="function")]


def unscoped_session_routes(app: FastAPI) -> list[str]:
    """The routes that take `get_session` without `scope="function"` (so commit after
    their response is sent), as "METHOD /path", directly or through another dependency."""

    def unscoped(dependant) -> bool:
        return any(
            (sub.call is get_session and sub.scope != "function") or unscoped(sub)
            for sub in dependant.dependencies
        )

    found = []
    for route in _routes(app):
        dependant = getattr(route, "dependant", None)  # None: not an API route
        if dependant is not None and unscoped(dependant):
            found.append(f"{','.join(sorted(route.methods or ()))} {route.path}")
    return found


def _routes(app: FastAPI):
    """Every route, those of included routers too (recent FastAPI resolves them lazily,
    with their prefix and include-time dependencies, and app.routes lists the router)."""
    try:
        from fastapi.routing import iter_route_contexts
    except ImportError:  # an older FastAPI copied included routes into app.routes
        return list(app.routes)
    return list(iter_route_contexts(app.routes))


def warn_unscoped_sessions(app: FastAPI) -> list[str]:
    """Log a warning for each route `unscoped_session_routes` finds; call it at startup."""
    routes = unscoped_session_routes(app)
    for route in routes:
        log.warning(
            '%s uses Depends(get_session) without scope="function": its COMMIT runs after '
            "the response is sent, so a failed commit still answers 200; use "
            "neon_migrate.web.session.SessionDep",
            route,
        )
    return routes
