"""neon-migrate: safe Alembic migrations for Neon, and the checks around them.

Every failure a user can cause ends here as one `error:` line and a distinct exit code;
a traceback means a bug. The Makefile's targets are aliases of these commands.
"""

from __future__ import annotations

import argparse
import os
import sys

from neon_migrate.commands import registry
from neon_migrate.errors import HarnessError

EXIT_CODES = """\
exit codes:
  0    done; for check and status: nothing wrong
  1    a revision, a check or a validation failed (the database is reachable)
  2    configuration or usage: a setting, a URL, a file, a flag
  3    a database endpoint (or Neon's API) is unreachable, or the connection was lost
  130  interrupted (SIGINT); 143 terminated (SIGTERM)
"""


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(
        prog="neon-migrate",
        description=__doc__.split("\n")[0],
        epilog=EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    top.add_argument("-v", "--verbose", action="store_true",
                     help="more detail on stderr (the pools a run used)")  # fmt: skip
    top.add_argument("--no-color", action="store_true", help="no colour (as does NO_COLOR=1)")
    sub = top.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in registry().values():
        command.arguments(
            sub.add_parser(
                command.name,
                help=command.help,
                description=command.description,
                epilog=EXIT_CODES,
                formatter_class=argparse.RawDescriptionHelpFormatter,
            )
        )
    return top


def _bound_every_wait() -> None:
    """Every network wait of this process has a deadline and yields to signals; and, as
    a command of the CLI, it may start the local twin (in local development)."""
    from neon_migrate.connection import waiting
    from neon_migrate.connection.endpoints import set_local_provider
    from neon_migrate.settings import get_settings
    from neon_migrate.twin import local_twin

    waiting.install(get_settings().db_connect_timeout)
    set_local_provider(local_twin)


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    command = registry()[args.command]
    if "format" in vars(args):  # check, fleet: --json is the short form of --format json
        if args.json and args.format not in (None, "json"):
            parser().error(f"--json and --format {args.format} disagree: give one")
        args.format = "json" if args.json else (args.format or "text")
        args.json = args.format == "json"
    from neon_migrate.commands import output

    output.configure(verbose=args.verbose, colour=not args.no_color)
    try:
        if command.connects:
            _bound_every_wait()
        if command.through_env_py:
            from neon_migrate.project import require_harness_env

            require_harness_env()
        return command.run(args)
    except HarnessError as err:
        return _failed(args, str(err), err.exit_code)
    except BrokenPipeError:  # the reader went away (`... | head`): stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except KeyboardInterrupt:
        return _failed(args, "interrupted", 130)
    except Exception as err:
        from alembic.util import CommandError  # loaded by then, if it is what was raised

        from neon_migrate.migrate.script_errors import script_problem

        problem = None if isinstance(err, CommandError) else script_problem(err)
        if problem is not None:  # a revision file that does not load
            return _failed(args, str(problem), problem.exit_code)
        if not isinstance(err, CommandError):
            raise  # a bug: let its traceback show
        cause = err.__cause__
        if isinstance(cause, HarnessError):
            return _failed(args, str(err), cause.exit_code)
        usage = any(m in str(err) for m in ("Can't locate revision", "No such revision"))
        return _failed(args, str(err), 2 if usage else 1)  # a revision named wrong: usage


def _failed(args: argparse.Namespace, message: str, code: int) -> int:
    """The one error line on stderr; with --json, the same as a document on stdout."""
    print(f"error: {message}", file=sys.stderr, flush=True)
    on_failure = registry()[args.command].on_failure
    if on_failure is not None:
        on_failure(message, code)
    if getattr(args, "json", False):
        from neon_migrate.commands.output import out_json

        out_json({"command": args.command, "ok": False, "error": message, "exit_code": code})
    return code


if __name__ == "__main__":
    sys.exit(main())
