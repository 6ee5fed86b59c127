"""status, history: what is applied, what is pending, and whether applied files changed."""

from __future__ import annotations

import argparse

from neon_migrate import project


def cmd_status(args: argparse.Namespace) -> int:
    from neon_migrate.migrate.status import run_status

    return run_status(project.alembic_config(), as_json=args.json)


def cmd_history(args: argparse.Namespace) -> int:
    from neon_migrate.migrate.status import run_history

    return run_history(project.alembic_config(), as_json=args.json)
