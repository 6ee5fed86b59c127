"""Where each endpoint connects, and with what: shared by the engines and the health check.

Kept free of SQLAlchemy so a check that needs one bare connection (make migrate at head,
verify) starts without importing it.
"""

from __future__ import annotations

from app.db import urls
from app.db.endpoints import get_endpoints
from app.db.timeouts import startup_options
from app.settings import get_settings

APP_NAME = "app"
MIGRATION_APP_NAME = "neon-migrate"


def app_connect_args() -> dict:
    """No startup options: PgBouncer rejects them."""
    return {"connect_timeout": get_settings().db_connect_timeout, "application_name": APP_NAME}


def migration_connect_args() -> dict:
    """The migration session's timeouts travel in the startup packet: no round trip."""
    settings = get_settings()
    return {
        "connect_timeout": settings.db_connect_timeout,
        "application_name": MIGRATION_APP_NAME,
        "options": startup_options(get_endpoints().direct, settings),
    }


def app_target() -> tuple[urls.Target, dict]:
    return urls.to_target(get_endpoints().pooled), app_connect_args()


def migration_target() -> tuple[urls.Target, dict]:
    return urls.to_target(get_endpoints().direct), migration_connect_args()
