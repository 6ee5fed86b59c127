"""status: every revision, applied or pending; applied files that changed since."""

from __future__ import annotations

import argparse

from neon_migrate import project
from neon_migrate.commands import Command, json_argument


def cmd_status(args: argparse.Namespace) -> int:
    from neon_migrate.migrate.status import run_status

    return run_status(project.alembic_config(), as_json=args.json)


COMMAND = Command(
    "status",
    "every revision: applied (when, how long, by whom) or pending; edited files",
    "Every revision, applied or pending, with when "
    "and by whom it was applied and how long it took; an applied revision whose "
    "file changed since, or that the scripts no longer have, is a problem "
    "(exit 1).",
    cmd_status,
    json_argument,
    through_env_py=True,
)
