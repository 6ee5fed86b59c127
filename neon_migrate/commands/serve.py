"""serve: run the app with uvicorn; in local development with no URL, on the local twin."""

from __future__ import annotations

import argparse
import os

from neon_migrate import project
from neon_migrate.commands import Command
from neon_migrate.commands.output import note
from neon_migrate.errors import ConfigError

DEFAULT_APP = "app.main:app"  # the example's; [tool.neon-migrate] app = "module:attribute"


def _arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("app", nargs="?", help="module:attribute (default: app.main:app, "
                        "or `app` in [tool.neon-migrate])")  # fmt: skip
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--reload", action="store_true", help="restart on code changes")


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


COMMAND = Command(
    "serve",
    "run the app (uvicorn); on the twin if no URL is set",
    "Run the web app with uvicorn; in local development with no DATABASE_URL, on the local twin.",
    cmd_serve,
    _arguments,
)
