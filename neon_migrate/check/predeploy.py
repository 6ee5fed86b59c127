"""The pre-deploy check: is this build safe to ship to this database? Changes nothing.

Checks run in order, each reading what earlier ones found; a check whose prerequisite did
not pass is skipped with the reason. Exit codes (a contract: the README's table states it):
0 every check passed (warnings allowed), 1 a check failed, 2 configuration or usage error,
3 a database endpoint unreachable.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from sqlalchemy.exc import DBAPIError

from neon_migrate.check.checks.config import check_config
from neon_migrate.check.checks.drift import check_drift
from neon_migrate.check.checks.endpoints import check_direct, check_pooled
from neon_migrate.check.checks.lint import check_lint
from neon_migrate.check.checks.plan import check_plan
from neon_migrate.check.checks.rehearsal import check_rehearsal
from neon_migrate.check.checks.revision import check_revision
from neon_migrate.check.checks.scripts import check_scripts
from neon_migrate.check.checks.validate import check_validate
from neon_migrate.check.context import Context, Outcome, Result
from neon_migrate.connection.connect import driver_message
from neon_migrate.errors import ConfigError, HarnessError, UnreachableError
from neon_migrate.observe.pool_stats import all_stats

# id, function, prerequisites
CHECKS: list[tuple[str, Callable[[Context], str], tuple[str, ...]]] = [
    ("config", check_config, ()),
    ("direct", check_direct, ("config",)),
    ("pooled", check_pooled, ("config",)),
    ("scripts", check_scripts, ()),
    ("revision", check_revision, ("direct", "scripts")),
    ("validate", check_validate, ("direct", "scripts")),
    ("plan", check_plan, ("revision",)),
    ("lint", check_lint, ("plan",)),
    ("rehearsal", check_rehearsal, ("plan",)),
    ("drift", check_drift, ("plan",)),
]
CHECK_IDS = [check_id for check_id, _, _ in CHECKS]


def selected(only: list[str], skip: list[str]) -> list[str]:
    """The checks to run: `only` (with what they need) minus `skip`."""
    unknown = sorted(set(only + skip) - set(CHECK_IDS))
    if unknown:
        raise ConfigError(
            f"unknown check id(s): {', '.join(unknown)}", f"use ids from: {', '.join(CHECK_IDS)}"
        )
    wanted = set(only or CHECK_IDS)
    needs = {check_id: prereqs for check_id, _, prereqs in CHECKS}
    frontier = list(wanted)
    while frontier:
        for prereq in needs[frontier.pop()]:
            if prereq not in wanted:
                wanted.add(prereq)
                frontier.append(prereq)
    chosen = [check_id for check_id in CHECK_IDS if check_id in wanted and check_id not in skip]
    for check_id in chosen:  # a skipped prerequisite would turn a check into a silent skip
        missing = [p for p in needs[check_id] if p in skip]
        if missing:
            raise ConfigError(
                f"--skip {', '.join(missing)} leaves {check_id} without what it needs",
                f"skip {check_id} too, or keep {', '.join(missing)}",
            )
    return chosen


def run_checks(config_file: str, root: Path, ids: list[str]) -> Context:
    ctx = Context(config_file=config_file, root=root)
    try:
        _run(ctx, ids)
    finally:
        ctx.close()
    ctx.pools = [stats.snapshot() for stats in all_stats()]
    return ctx


def _run(ctx: Context, ids: list[str]) -> None:
    for check_id, function, prereqs in CHECKS:
        if check_id not in ids:
            continue
        missing = [p for p in prereqs if not ctx.passed(p)]
        if missing:
            reason = ", ".join(
                f"{p} {ctx.results[p].status if p in ctx.results else 'not run'}" for p in missing
            )
            ctx.results[check_id] = Result(check_id, "skip", f"needs {reason}")
            continue
        started = time.perf_counter()
        try:
            result = Result(check_id, "pass", function(ctx))
            result.details = ctx.details.pop(check_id, {})
        except Outcome as outcome:
            result = Result(
                check_id,
                outcome.status,
                outcome.message,
                exit_code=outcome.exit_code if outcome.status == "fail" else 0,
                details=outcome.details,
            )
        except UnreachableError as err:
            result = Result(check_id, "fail", str(err), exit_code=3)
        except HarnessError as err:
            result = Result(check_id, "fail", str(err), exit_code=err.exit_code)
        except DBAPIError as err:  # connected, but a read failed: rights, a broken catalog
            result = Result(check_id, "fail", f"database error: {driver_message(err)}")
            ctx.close()  # the next check starts on a fresh connection, not an aborted one
        result.duration_ms = (time.perf_counter() - started) * 1000
        ctx.results[check_id] = result


def exit_code(ctx: Context) -> int:
    codes = {r.exit_code for r in ctx.results.values() if r.status == "fail"}
    for code in (2, 3, 1):
        if code in codes:
            return code
    return 1 if codes else 0
