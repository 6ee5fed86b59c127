"""db-up, db-down, serve: the local side of development. Only these start servers."""

from __future__ import annotations

import argparse
import os
import shlex

from neon_migrate import project
from neon_migrate.commands.output import note, out
from neon_migrate.errors import ConfigError

DEFAULT_APP = "app.main:app"  # the example's; [tool.neon-migrate] app = "module:attribute"


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


def cmd_db_down(_: argparse.Namespace) -> int:
    from neon_migrate.settings import get_settings
    from neon_migrate.twin.lifecycle import stop_twin

    settings = get_settings()
    server, pooler, api = stop_twin(settings.local_db_dir, settings.local_pg_bin_dir)
    out(f"db-down: local PostgreSQL {'stopped' if server else 'was not running'}")
    out(f"db-down: PgBouncer {'stopped' if pooler else 'was not running'}")
    out(f"db-down: Neon API stand-in {'stopped' if api else 'was not running'}")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    """Run the app with uvicorn; in local development with no URL, on the twin (started
    here, by the command line, as every other local command does)."""
    try:
        import uvicorn
    except ImportError:
        raise ConfigError("serve needs uvicorn", "pip install uvicorn") from None
    from neon_migrate.connection.endpoints import get_endpoints

    endpoints = get_endpoints()
    for line in endpoints.describe():
        note(f"serve: {line}")
    if endpoints.local is not None:  # the app process (and a reloader's) finds the twin
        os.environ.setdefault("DATABASE_URL", endpoints.pooled)
        os.environ.setdefault("DATABASE_URL_DIRECT", endpoints.direct)
    app = args.app or _configured_app() or DEFAULT_APP
    note(f"serve: {app} on http://{args.host}:{args.port}")
    # The app's package is found from the project's root, as `uvicorn app.main:app` there
    # finds it: the `neon-migrate` script's own folder is what Python puts on sys.path.
    uvicorn.run(app, host=args.host, port=args.port, reload=args.reload, app_dir=os.getcwd())
    return 0


def _configured_app() -> str | None:
    try:
        return project.option(project.alembic_config(), "app")
    except ConfigError:
        return None
