"""The migration session's timeouts, in PostgreSQL's terms.

One place turns settings (seconds) into what the server reads, whether they travel in
the startup packet (our engine), in set_config (a caller's connection) or in offline SQL.
"""

from __future__ import annotations

from neon_migrate.connection import urls
from neon_migrate.settings import Settings


def pg_ms(seconds: float) -> str:
    """A PostgreSQL duration; a positive value never rounds down to 0, which means no limit."""
    return f"{max(1, round(seconds * 1000)) if seconds > 0 else 0}ms"


def lock_timeout(settings: Settings) -> str:
    return pg_ms(settings.migration_lock_timeout)


def statement_timeout(settings: Settings) -> str:
    return pg_ms(settings.migration_statement_timeout)


# The server's side of a vanished client: probe an idle socket after 10 s, every 5 s, 3
# times; and, while a statement runs, look every 2 s whether the client is still there
# (PostgreSQL 14+), so a killed migrator's locks go within seconds, not at statement end.
SERVER_LIVENESS = (
    "-c tcp_keepalives_idle=10 -c tcp_keepalives_interval=5 -c tcp_keepalives_count=3 "
    "-c client_connection_check_interval=2000"
)
# The custom setting a migration session is started with, read back with the lock: a
# pooler that drops startup options (ignore_startup_parameters = options) is caught.
SESSION_SETTING = "neon_migrate.session"


def startup_options(url: str, settings: Settings, token: str) -> str:
    """libpq `options` for the migration engine: the URL's own, plus the timeouts, the
    server's liveness checks, and this process's session token.

    In the startup packet they cost no round trip on a direct server. PgBouncer rejects
    the `options` parameter unless told to ignore it, so a pooled URL given for
    migrations fails at connect (connect.explain says so) or at the token read-back.
    """
    ours = f"-c lock_timeout={lock_timeout(settings)}"
    ours += f" -c statement_timeout={statement_timeout(settings)}"
    idle = pg_ms(settings.migration_idle_timeout)  # in a transaction, and outside one (14+)
    ours += f" -c idle_in_transaction_session_timeout={idle} -c idle_session_timeout={idle}"
    ours += f" {SERVER_LIVENESS} -c {SESSION_SETTING}={token}"
    given = urls.query_value(url, "options")
    return f"{given} {ours}" if given else ours
