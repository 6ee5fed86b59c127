"""`lint`: the pending revisions' SQL against our rules and squawk's."""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import text

from neon_migrate.check import lint as linting
from neon_migrate.check.context import Context, Outcome

BIG_TABLE_ROWS = 100_000


def check_lint(ctx: Context) -> str:
    if not ctx.pending:
        return "nothing pending to lint"
    rows = _row_estimates(ctx)
    findings = [f for r in ctx.pending for f in linting.own_rules(r, rows, BIG_TABLE_ROWS)]
    squawk_note = ""
    online = [r.revision for r in ctx.pending if r.online_only]
    if online:
        squawk_note = f"; not linted, as they have no SQL until run online: {', '.join(online)}"
    try:
        version = ctx.health["direct"].server_version.split()[0]
        findings += linting.squawk(ctx.pending, ctx.root / ".squawk.toml", version)
    except FileNotFoundError:
        squawk_note += "; squawk is not installed, only our own rules ran"
    ctx.findings = linting.apply_waivers(findings, ctx.pending)
    failing = [f for f in ctx.findings if f.severity == "fail" and not f.waived]
    warnings = [f for f in ctx.findings if f.severity == "warn" and not f.waived]
    waived = [f for f in ctx.findings if f.waived]
    summary = (
        f"{len(failing)} dangerous, {len(warnings)} warning(s), {len(waived)} waived{squawk_note}"
    )
    if failing:
        first = failing[0]
        raise Outcome(
            "fail",
            f"{summary}: {first.revision} {first.rule}: "
            f"{linting.DANGEROUS.get(first.rule, first.message)}",
        )
    if warnings or squawk_note:
        raise Outcome("warn", summary)
    return summary


def _row_estimates(ctx: Context) -> Callable[[str], float | None]:
    """Row counts as the planner estimates them (no table scan), read lazily, on the
    check's one direct connection."""
    cache: dict[str, float | None] = {}

    def rows(table: str) -> float | None:
        if table not in cache:
            conn = ctx.direct()
            cache[table] = conn.execute(
                text("SELECT reltuples FROM pg_class WHERE oid = to_regclass(:t)"), {"t": table}
            ).scalar()
            conn.rollback()
        return cache[table]

    return rows
