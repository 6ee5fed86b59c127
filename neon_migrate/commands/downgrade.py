"""downgrade: revert to a revision on the direct endpoint."""

from __future__ import annotations

import argparse

from neon_migrate import project
from neon_migrate.commands import Command


def _arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("revision", metavar="REVISION", help="a revision id, or -1")


def cmd_downgrade(args: argparse.Namespace) -> int:
    from alembic import command

    config = project.alembic_config()
    command.downgrade(config, args.revision)
    return 0


COMMAND = Command(
    "downgrade",
    "revert to a revision (e.g. -1)",
    "Revert to REVISION (an id, or -1 for one step) on the direct endpoint.",
    cmd_downgrade,
    _arguments,
    through_env_py=True,
)
