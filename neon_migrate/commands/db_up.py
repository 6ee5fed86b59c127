"""db-up: start (or reuse) the local twin. With db-down and serve, the local side of
development: only these start servers."""

from __future__ import annotations

import argparse
import shlex

from neon_migrate.commands import Command
from neon_migrate.commands.output import note, out
from neon_migrate.errors import ConfigError


def _arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--env", action="store_true",
                        help="print `export DATABASE_URL=...` lines, password included "
                        "(local development only)")  # fmt: skip


def cmd_db_up(args: argparse.Namespace) -> int:
    from neon_migrate.connection.endpoints import local_development
    from neon_migrate.connection.masking import mask
    from neon_migrate.settings import get_settings
    from neon_migrate.twin.lifecycle import start_twin

    settings = get_settings()
    export = getattr(args, "env", False)
    not_local = local_development(settings) if export else None
    if not_local:  # the one output that carries a password: never in a CI log
        raise ConfigError(
            f"db-up --env prints the local twin's password, and {not_local}",
            "use it on a developer's machine only; elsewhere set DATABASE_URL from a secret",
        )
    twin = start_twin(settings.local_db_dir, settings.local_pg_bin_dir)
    for line in twin.describe():
        note(f"db-up: {line}")
    if export:  # for the app's own settings, its tests: eval "$(neon-migrate db-up --env)"
        out(f"export DATABASE_URL={shlex.quote(twin.pooled_url)}")
        out(f"export DATABASE_URL_DIRECT={shlex.quote(twin.direct_url)}")
        return 0
    out(f"db-up: DATABASE_URL={mask(twin.pooled_url)}")
    out(f"db-up: DATABASE_URL_DIRECT={mask(twin.direct_url)}")
    certs = twin.server.certificates
    out(f"db-up: password in {twin.state_file}; CA for sslmode=verify-full: {certs.ca_file}")
    return 0


COMMAND = Command(
    "db-up",
    "start (or reuse) the local twin",
    "Start (or reuse) the local twin: PostgreSQL with TLS and PgBouncer in "
    "transaction mode. Local development only. With --env, shell `export` lines "
    "with its real URLs (password included) for other tools: "
    'eval "$(neon-migrate db-up --env)".',
    cmd_db_up,
    _arguments,
)
