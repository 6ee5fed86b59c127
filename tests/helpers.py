"""Helpers the tests share: run commands as a user would, read a schema back."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import forked
import psycopg

ROOT = Path(__file__).resolve().parent.parent
# A bound on time is behaviour ("a stall ends within N s") and is tested with a generous
# margin. Most such tests time a child process, whose start-up alone (importing SQLAlchemy,
# Alembic and the models) takes seconds on a loaded 2-core machine running the suite on
# parallel workers. Every upper bound is widened by this one factor instead of each test
# guessing its own; a bound still tells a prompt end from the wait it guards against.
TIME_SLACK = float(os.environ.get("TEST_TIME_SLACK", "2.5"))

CLI = [sys.executable, "-m", "neon_migrate.cli"]  # the harness's command line, as a new process

# A waiter polls pg_try_advisory_lock outside any transaction (it never blocks inside one:
# see neon_migrate/migrate/lock.py), so it shows as a migration session whose last query is a poll.
WAITING_FOR_OUR_LOCK = """
    SELECT count(*) FROM pg_stat_activity
    WHERE application_name = 'neon-migrate' AND query LIKE 'SELECT pg_try_advisory_lock(%'
      AND datname = current_database() AND pid <> pg_backend_pid()
"""


def ends_within(took: float, bound: float, what: str = "") -> None:
    """`took` seconds is within `bound`, widened by TIME_SLACK."""
    limit = bound * TIME_SLACK
    assert took < limit, f"{what} took {took:.1f}s: over {bound} s x {TIME_SLACK} (TIME_SLACK)"


def run(args: list[str], env: dict[str, str], cwd: Path | None = None, timeout: float = 120):
    """Run a command as a user would; stdout and stderr merged, as a terminal shows them.
    A Python command is forked with its heavy imports done (forked.py)."""
    return forked.run(args, env, cwd, timeout)


def alembic(*args: str, env: dict[str, str], cwd: Path | None = None):
    return run([sys.executable, "-m", "alembic", *args], env, cwd)


def cli(*args: str, env: dict[str, str], cwd: Path | None = None):
    return run([*CLI, *args], env, cwd)


def schema(url: str) -> dict[str, list]:
    """Tables, columns, constraints and indexes of the public schema, comparable with ==."""
    queries = {
        "columns": """SELECT table_name, column_name, data_type, character_maximum_length,
                             is_nullable, column_default
                      FROM information_schema.columns WHERE table_schema = 'public'""",
        "constraints": """SELECT conrelid::regclass::text, conname, pg_get_constraintdef(oid)
                          FROM pg_constraint WHERE connamespace = 'public'::regnamespace""",
        "indexes": """SELECT tablename, indexname, indexdef FROM pg_indexes
                      WHERE schemaname = 'public'""",
    }
    with psycopg.connect(url) as conn:
        return {name: sorted(conn.execute(sql).fetchall()) for name, sql in queries.items()}


def verify_line(output: str, item: str) -> str:
    """The `verify:` result line for one item (scripts, direct, pooled)."""
    pattern = re.compile(rf"^verify: {item}\s+(ok|FAIL|warn)\s")
    return next(line for line in output.splitlines() if pattern.match(line))


def add_revision(project: dict, rev: str, down: str, *sql: str, source: str = "") -> Path:
    """A revision file in a scratch project: `sql` statements, or raw upgrade `source`."""
    body = source or "\n".join(f"    op.execute({statement!r})" for statement in sql) or "    pass"
    path = project["root"] / "migrations" / "versions" / f"{rev}.py"
    path.write_text(
        f'"""{rev} test revision"""\nfrom alembic import op\n\nrevision = "{rev}"\n'
        f'down_revision = "{down}"\nbranch_labels = None\ndepends_on = None\n\n\n'
        f"def upgrade():\n{body}\n\n\n"
        "def downgrade():\n    raise NotImplementedError('irreversible: a test revision')\n"
    )
    return path


def rows(url: str, query: str) -> list[tuple]:
    """The rows of one query, on a connection of its own."""
    with psycopg.connect(url) as conn:
        return conn.execute(query).fetchall()


def standin_server(pg_server, database: str):
    """What the Neon API stand-in reads of the twin's LocalServerInfo, for a test server."""
    from types import SimpleNamespace

    return SimpleNamespace(
        host=pg_server.host,
        port=pg_server.port,
        user=pg_server.user,
        password=pg_server.password,
        database=database,
        tls=pg_server.tls,
    )


def psql(url: str, sql: str, timeout: float = 120) -> subprocess.CompletedProcess:
    """Apply a SQL script as a DBA would: the bundled psql, stopping at the first error."""
    from neon_migrate.twin.local import bundled_bin_dir

    command = [str(bundled_bin_dir() / "psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1", url]
    return subprocess.run(command, input=sql, capture_output=True, text=True, timeout=timeout)


def expires_in(seconds: float) -> datetime:
    """A UTC expiry `seconds` from now, for NeonApi.create_branch(..., expires_at)."""
    return datetime.now(UTC) + timedelta(seconds=seconds)
