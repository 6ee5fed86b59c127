"""check: the pre-deploy check, a table for people, JSON for machines, Markdown for a
review; on GitHub Actions also the job summary and annotations on the revision files."""

from __future__ import annotations

import argparse
import json
import time

from neon_migrate import project
from neon_migrate.commands import Command, json_argument
from neon_migrate.commands.output import colour, out
from neon_migrate.errors import ConfigError

CHECK_IDS = "config, direct, pooled, scripts, revision, validate, plan, lint, rehearsal, drift"


def _arguments(parser: argparse.ArgumentParser) -> None:
    json_argument(parser)
    parser.add_argument("--format", choices=["text", "json", "markdown"],
                        help="text (default), json (= --json) or markdown")  # fmt: skip
    for flag in ("--only", "--skip"):
        parser.add_argument(flag, action="append", default=[], metavar="IDS",
                            help=f"comma-separated check ids: {CHECK_IDS}")  # fmt: skip


def cmd_check(args: argparse.Namespace) -> int:
    try:
        from neon_migrate.check.predeploy import exit_code, run_checks, selected
    except ImportError as exc:  # sqlparse / squawk: the [check] extra
        raise ConfigError(
            f"the pre-deploy check needs the [check] extra ({exc.name} is not installed)",
            "pip install 'neon-migrate[check]' where the check runs (CI)",
        ) from None
    from neon_migrate.check import annotations, markdown
    from neon_migrate.check.report import as_json, as_table
    from neon_migrate.connection.endpoints import get_endpoints

    ids = selected(_ids(args.only), _ids(args.skip))
    config = project.alembic_config()
    started = time.perf_counter()
    ctx = run_checks(config.config_file_name, project.root(config), ids)
    total_ms = (time.perf_counter() - started) * 1000
    target = get_endpoints().describe() if ctx.passed("config") else []
    document = as_json(ctx, target, total_ms)
    wanted = args.format == "markdown" or annotations.on_github_actions()
    report = markdown.render(document) if wanted else ""
    if args.format == "json":
        out(json.dumps(document, indent=2))  # its own `schema` key
    elif args.format == "markdown":
        out(report.rstrip("\n"))
    else:
        out(as_table(ctx, target, total_ms, colour=colour()))
    annotations.publish(document, report)
    return exit_code(ctx)


def _ids(values: list[str]) -> list[str]:
    return [i.strip() for value in values for i in value.split(",") if i.strip()]


def _publish_failure(message: str, code: int) -> None:
    """On GitHub Actions, where the team looks for the answer."""
    from neon_migrate.check.annotations import publish_failure

    publish_failure(message, code)


COMMAND = Command(
    "check",
    "pre-deploy check: is this build safe to ship?",
    "The pre-deploy check: configuration, both endpoints, the scripts, what "
    "would be applied, lint, a rehearsal, drift. Changes nothing.",
    cmd_check,
    _arguments,
    through_env_py=True,
    on_failure=_publish_failure,
)
