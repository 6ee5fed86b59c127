"""Where each endpoint connects, and with what: shared by the engines and the health check.

Kept free of SQLAlchemy so a check that needs one bare connection (make migrate at head,
verify) starts without importing it.
"""

from __future__ import annotations

import secrets

from neon_migrate.connection import urls
from neon_migrate.connection.endpoints import get_endpoints
from neon_migrate.connection.timeouts import startup_options
from neon_migrate.settings import get_settings

APP_NAME = "app"
MIGRATION_APP_NAME = "neon-migrate"
# This process's migration sessions are started with it (see timeouts.SESSION_SETTING).
SESSION_TOKEN = secrets.token_hex(8)
# The client's side of a silent link: keepalive probes after 10 s idle, every 5 s, 3 of
# them; and unacknowledged data gives up after 25 s. libpq takes these for every
# connection; through PgBouncer they bound the link to the pooler.
LIVENESS = {
    "keepalives": 1,
    "keepalives_idle": 10,
    "keepalives_interval": 5,
    "keepalives_count": 3,
    "tcp_user_timeout": 25_000,
}


def app_connect_args() -> dict:
    """No startup options: PgBouncer rejects them."""
    settings = get_settings()
    return {"connect_timeout": settings.db_connect_timeout, "application_name": APP_NAME} | (
        LIVENESS
    )


def migration_connect_args() -> dict:
    """The migration session's timeouts travel in the startup packet: no round trip."""
    settings = get_settings()
    return {
        "connect_timeout": settings.db_connect_timeout,
        "application_name": MIGRATION_APP_NAME,
        "options": startup_options(get_endpoints().direct, settings, SESSION_TOKEN),
    } | LIVENESS


def app_target() -> tuple[urls.Target, dict]:
    return urls.to_target(get_endpoints().pooled), app_connect_args()


def migration_target() -> tuple[urls.Target, dict]:
    return urls.to_target(get_endpoints().direct), migration_connect_args()
