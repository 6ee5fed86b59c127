"""The one entry point the Makefile and scripts call: `python -m neon_migrate.cli COMMAND`.

Every failure a user can cause ends here as one `error:` line and a distinct exit code
(2 configuration, 3 unreachable, 1 anything else); a traceback means a bug.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

from neon_migrate.errors import ConfigError, HarnessError


def say(line: str) -> None:
    print(line, flush=True)


def config_path() -> Path:
    path = Path(os.environ.get("ALEMBIC_CONFIG", "alembic.ini"))
    if not path.is_file():
        raise ConfigError(f"{path} not found", "run the command from the project's root folder")
    return path


def alembic_config():
    from alembic.config import Config

    return Config(str(config_path()))


def report(items) -> int:
    width = max(len(item.name) for item in items)
    for item in items:
        say(f"verify: {item.name:<{width}}  {'ok  ' if item.ok else 'FAIL'}  {item.detail}")
    failed = [item for item in items if not item.ok]
    if failed:
        say(f"verify: FAILED: {', '.join(item.name for item in failed)}")
    return max((item.exit_code for item in failed), default=0)


def cmd_migrate(_: argparse.Namespace) -> int:
    """Upgrade to head, then verify. At head already (the common case on a deploy), one
    connection and one query settle it, and that answer is the direct endpoint's check."""
    from neon_migrate.connection.endpoints import get_endpoints
    from neon_migrate.connection.health import check_connection
    from neon_migrate.migrate.verify import verify

    path = config_path()
    for line in get_endpoints().describe():
        say(f"migrate: {line}")
    known, heads = _graph(path)
    started = time.perf_counter()
    direct = check_connection("direct")
    if not heads:  # an empty versions folder: verify says what to do
        say("migrate: no revisions to apply")
        return report(verify(heads, known, direct=direct))
    if direct.revisions == heads:
        ms = (time.perf_counter() - started) * 1000
        say(f"migrate: already at head ({', '.join(heads)}); nothing to apply ({ms:.0f} ms)")
        return report(verify(heads, known, direct=direct))
    from alembic import command

    from neon_migrate.migrate.environment import REVISION_NOW
    from neon_migrate.migrate.progress import APPLIED

    config = alembic_config()
    command.upgrade(config, "head")
    ms = (time.perf_counter() - started) * 1000
    applied = config.attributes.get(APPLIED, [])
    now = ", ".join(heads)
    if applied:  # where the database is, read back after the run
        now = config.attributes.get(REVISION_NOW, now)
        say(f"migrate: applied {len(applied)} revision(s) in {ms:.0f} ms; now at {now}")
    else:  # another run got there first, while we waited for its lock
        say(f"migrate: already at head ({now}); nothing to apply ({ms:.0f} ms)")
    _say_pools("migrate")
    return report(verify(heads, known))


def cmd_verify(_: argparse.Namespace) -> int:
    from neon_migrate.connection.endpoints import get_endpoints
    from neon_migrate.migrate.verify import verify

    path = config_path()
    for line in get_endpoints().describe():
        say(f"verify: {line}")
    known, heads = _graph(path)
    return report(verify(heads, known))


def _graph(path: Path) -> tuple[frozenset[str], tuple[str, ...]]:
    """Every revision id and the heads: read from the files, or by Alembic if unsure."""
    from neon_migrate.migrate.heads import quick_graph

    graph = quick_graph(path)
    if graph is not None:
        return graph
    from alembic.script import ScriptDirectory

    script = ScriptDirectory.from_config(alembic_config())
    known = frozenset(r.revision for r in script.walk_revisions())
    return known, tuple(sorted(script.get_heads()))


def _say_pools(command: str) -> None:
    """The pools this run used, in the words of /health/db/pool and the metrics."""
    if "neon_migrate.observe.pool_stats" not in sys.modules:  # no engine was built: nothing to show
        return
    from neon_migrate.observe.figures import pool_text
    from neon_migrate.observe.pool_stats import all_stats

    for stats in all_stats():
        say(f"{command}: {pool_text(stats.snapshot())}")


def cmd_db_up(_: argparse.Namespace) -> int:
    from neon_migrate.connection.urls import mask
    from neon_migrate.settings import get_settings
    from neon_migrate.twin.lifecycle import start_twin

    settings = get_settings()
    twin = start_twin(settings.local_db_dir, settings.local_pg_bin_dir)
    for line in twin.describe():
        say(f"db-up: {line}")
    say(f"db-up: DATABASE_URL={mask(twin.pooled_url)}")
    say(f"db-up: DATABASE_URL_DIRECT={mask(twin.direct_url)}")
    certs = twin.server.certificates
    say(f"db-up: password in {twin.state_file}; CA for sslmode=verify-full: {certs.ca_file}")
    return 0


def cmd_db_down(_: argparse.Namespace) -> int:
    from neon_migrate.settings import get_settings
    from neon_migrate.twin.lifecycle import stop_twin

    settings = get_settings()
    server, pooler = stop_twin(settings.local_db_dir, settings.local_pg_bin_dir)
    say(f"db-down: local PostgreSQL {'stopped' if server else 'was not running'}")
    say(f"db-down: PgBouncer {'stopped' if pooler else 'was not running'}")
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    import json

    from neon_migrate.check.predeploy import exit_code, run_checks, selected
    from neon_migrate.check.report import as_json, as_table
    from neon_migrate.connection.endpoints import get_endpoints

    ids = selected(_ids(args.only), _ids(args.skip))
    config = alembic_config()
    started = time.perf_counter()
    ctx = run_checks(config.config_file_name, Path(config.config_file_name).resolve().parent, ids)
    total_ms = (time.perf_counter() - started) * 1000
    target = get_endpoints().describe() if ctx.passed("config") else []
    if args.json:
        print(json.dumps(as_json(ctx, target, total_ms), indent=2), flush=True)
    else:
        say(as_table(ctx, target, total_ms, colour=sys.stdout.isatty()))
    return exit_code(ctx)


def _ids(values: list[str]) -> list[str]:
    return [i.strip() for value in values for i in value.split(",") if i.strip()]


COMMANDS: dict[str, tuple[Callable[[argparse.Namespace], int], str]] = {
    "migrate": (cmd_migrate, "upgrade to head on the direct endpoint, then verify"),
    "verify": (cmd_verify, "check both endpoints: reachable, SSL, at head"),
    "db-up": (cmd_db_up, "start (or reuse) the local PostgreSQL and PgBouncer"),
    "db-down": (cmd_db_down, "stop the local PostgreSQL and PgBouncer"),
    "check": (cmd_check, "pre-deploy check: is this build safe to ship? changes nothing"),
}


def _bound_every_wait() -> None:
    """Every network wait of this process has a deadline and yields to signals; and, as
    a command of the CLI, it may start the local twin (in local development)."""
    from neon_migrate.connection import waiting
    from neon_migrate.connection.endpoints import allow_starting_the_twin
    from neon_migrate.settings import get_settings

    waiting.install(get_settings().db_connect_timeout)
    allow_starting_the_twin()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m neon_migrate.cli", description=__doc__.split("\n")[0]
    )
    sub = parser.add_subparsers(dest="command", required=True)
    for name, (_, help_text) in COMMANDS.items():
        command_parser = sub.add_parser(name, help=help_text)
        if name == "check":
            command_parser.add_argument("--json", action="store_true", help="JSON for machines")
            for flag in ("--only", "--skip"):
                command_parser.add_argument(
                    flag,
                    action="append",
                    default=[],
                    metavar="IDS",
                    help="comma-separated check ids: config, direct, pooled, scripts, "
                    "revision, plan, lint, rehearsal, drift",
                )
    args = parser.parse_args(argv)
    try:
        _bound_every_wait()
        return COMMANDS[args.command][0](args)
    except HarnessError as err:
        print(f"error: {err}", file=sys.stderr, flush=True)
        return err.exit_code
    except BrokenPipeError:  # the reader went away (`... | head`): stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr, flush=True)
        return 130
    except Exception as err:
        from alembic.util import CommandError  # loaded by then, if it is what was raised

        from neon_migrate.migrate.script_errors import script_problem

        problem = None if isinstance(err, CommandError) else script_problem(err)
        if problem is not None:  # a revision file that does not load
            print(f"error: {problem}", file=sys.stderr, flush=True)
            return problem.exit_code
        if not isinstance(err, CommandError):
            raise  # a bug: let its traceback show
        cause = err.__cause__
        print(f"error: {err}", file=sys.stderr, flush=True)
        return cause.exit_code if isinstance(cause, HarnessError) else 1


if __name__ == "__main__":
    sys.exit(main())
