"""history: the revisions in the scripts, oldest first; no database needed."""

from __future__ import annotations

import argparse

from neon_migrate import project
from neon_migrate.commands import Command, json_argument


def cmd_history(args: argparse.Namespace) -> int:
    from neon_migrate.migrate.status import run_history

    return run_history(project.alembic_config(), as_json=args.json)


COMMAND = Command(
    "history",
    "the revisions in the scripts (no database needed)",
    "The revisions in the scripts, oldest first. Needs no database.",
    cmd_history,
    json_argument,
    through_env_py=True,
)
