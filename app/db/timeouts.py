"""The migration session's timeouts, in PostgreSQL's terms.

One place turns settings (seconds) into what the server reads, whether they travel in
the startup packet (our engine), in set_config (a caller's connection) or in offline SQL.
"""

from __future__ import annotations

from app.db import urls
from app.settings import Settings


def pg_ms(seconds: float) -> str:
    """A PostgreSQL duration; a positive value never rounds down to 0, which means no limit."""
    return f"{max(1, round(seconds * 1000)) if seconds > 0 else 0}ms"


def lock_timeout(settings: Settings) -> str:
    return pg_ms(settings.migration_lock_timeout)


def statement_timeout(settings: Settings) -> str:
    return pg_ms(settings.migration_statement_timeout)


def startup_options(url: str, settings: Settings) -> str:
    """libpq `options` for the migration engine: the URL's own, plus the timeouts.

    In the startup packet they cost no round trip on a direct server. Every PgBouncer
    rejects the `options` parameter, so a pooled URL given for migrations fails at
    connect, whatever its host name (connect.explain says so).
    """
    ours = f"-c lock_timeout={lock_timeout(settings)}"
    ours += f" -c statement_timeout={statement_timeout(settings)}"
    given = urls.query_value(url, "options")
    return f"{given} {ours}" if given else ours
