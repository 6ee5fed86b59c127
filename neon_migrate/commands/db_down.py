"""db-down: stop the local twin."""

from __future__ import annotations

import argparse

from neon_migrate.commands import Command
from neon_migrate.commands.output import out


def cmd_db_down(_: argparse.Namespace) -> int:
    from neon_migrate.settings import get_settings
    from neon_migrate.twin.lifecycle import stop_twin

    settings = get_settings()
    server, pooler, api = stop_twin(settings.local_db_dir, settings.local_pg_bin_dir)
    out(f"db-down: local PostgreSQL {'stopped' if server else 'was not running'}")
    out(f"db-down: PgBouncer {'stopped' if pooler else 'was not running'}")
    out(f"db-down: Neon API stand-in {'stopped' if api else 'was not running'}")
    return 0


COMMAND = Command("db-down", "stop the local twin", "Stop the local twin.", cmd_db_down)
