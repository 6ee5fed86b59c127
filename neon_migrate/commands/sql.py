"""sql: the upgrade SQL, rendered offline."""

from __future__ import annotations

import argparse

from neon_migrate import project
from neon_migrate.commands import Command
from neon_migrate.commands.output import note
from neon_migrate.commands.verify import graph
from neon_migrate.migrate.heads import refuse_unknown


def _arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--pending", action="store_true",
                        help="only what the database does not have yet")  # fmt: skip
    parser.add_argument("--to", metavar="REV", help="stop at this revision (default: head)")


def cmd_sql(args: argparse.Namespace) -> int:
    """Offline SQL on stdout; with --pending only what the database does not have yet."""
    import sys

    from alembic import command

    # The SQL goes to stdout either way; naming it makes env.py raise its error to us
    # (one `error:` line) rather than print it and exit, as it does for `alembic --sql`.
    config = project.alembic_config(output_buffer=sys.stdout)
    target = args.to or "heads"
    if not args.pending:
        command.upgrade(config, target, sql=True)
        return 0
    from neon_migrate.connection.health import check_connection
    from neon_migrate.migrate.heads import one_database_head

    current = check_connection("direct").revisions
    at = one_database_head(current)
    known, heads = graph()
    refuse_unknown(current, known)
    if current == (heads if target == "heads" else (target,)):
        note(f"sql: the database is at {at}; nothing pending")
        return 0
    start = f"{at}:" if at else ""
    command.upgrade(config, f"{start}{target}", sql=True)
    return 0


COMMAND = Command(
    "sql",
    "print the upgrade SQL (offline)",
    "Print the upgrade SQL without running it: from the start, or with --pending "
    "from the revision the database is at (read, not changed).",
    cmd_sql,
    _arguments,
    through_env_py=True,
)
