"""The pre-deploy check's two outputs: a table for people, JSON for machines.

The JSON shape is a contract (README, "Pre-deploy check"): add keys, never rename or
remove them without bumping `schema`. Nothing here prints a URL unmasked.
"""

from __future__ import annotations

from neon_migrate.check.context import Context
from neon_migrate.check.origins import located, repository_path
from neon_migrate.check.predeploy import exit_code
from neon_migrate.observe.figures import pool_text

SCHEMA = "neon-migrate/predeploy/v1"
COLOURS = {"pass": "32", "warn": "33", "fail": "31", "skip": "2"}


def as_json(ctx: Context, target: list[str], total_ms: float) -> dict:
    code = exit_code(ctx)
    return {
        "schema": SCHEMA,
        "ok": code == 0,
        "exit_code": code,
        "target": target,
        "checks": [
            {
                "id": r.id,
                "status": r.status,
                "message": r.message,
                "duration_ms": round(r.duration_ms, 1),
                "details": r.details,
            }
            for r in ctx.results.values()
        ],
        "plan": {
            "current": list(ctx.current),
            "heads": sorted(ctx.script.get_heads()) if ctx.script else [],
            "pending": [
                {
                    "revision": r.revision,
                    "message": r.message,
                    "file": r.path.name,
                    "path": repository_path(r.path, ctx.root),
                    "rehearsable": r.rehearsable,
                    "sql": r.sql,
                }
                for r in ctx.pending
            ],
        },
        "lint": located(ctx.findings, ctx.pending, ctx.root, ctx.config_file),
        "pools": [snapshot.as_dict() for snapshot in ctx.pools],
        "timings": {"total_ms": round(total_ms, 1)}
        | {r.id: round(r.duration_ms, 1) for r in ctx.results.values()},
    }


def as_table(ctx: Context, target: list[str], total_ms: float, colour: bool) -> str:
    def paint(status: str, text: str) -> str:
        return f"\033[{COLOURS[status]}m{text}\033[0m" if colour else text

    lines = [f"target: {line}" for line in target]
    lines.append(f"{'CHECK':<10} {'STATUS':<6} {'TIME':>8}  MESSAGE")
    for r in ctx.results.values():
        status = paint(r.status, f"{r.status.upper():<6}")
        lines.append(f"{r.id:<10} {status} {r.duration_ms:>6.0f}ms  {r.message}")
    if ctx.pending:
        lines.append("")
        lines.append(f"plan: {len(ctx.pending)} revision(s) to apply, in order")
        for number, r in enumerate(ctx.pending, 1):
            note = "" if r.rehearsable else "  (autocommit_block: not rehearsable)"
            lines.append(f"  {number}. {r.revision}  {r.message}{note}")
    if ctx.findings:
        lines.append("")
        lines.append("lint:")
        for f in ctx.findings:
            status = "waived" if f.waived else f.severity
            tag = paint("pass" if f.waived else f.severity, f"{status.upper():<6}")
            why = f" (waived: {f.waiver_reason})" if f.waived else ""
            lines.append(f"  {tag} {f.revision} {f.rule} (SQL line {f.line}): {f.message}{why}")
        if any(f.severity == "fail" and not f.waived for f in ctx.findings):
            lines.append(
                "  to accept a reviewed risk, add to the revision file: "
                "# predeploy: allow <rule> -- <reason>"
            )
    rehearsal = ctx.results.get("rehearsal")
    diff = rehearsal.details.get("schema_diff") if rehearsal is not None else None
    if diff:  # Neon's own account of the DDL: what the deploy will change
        changed = [ln for ln in diff.splitlines()
                   if ln[:1] in "+-" and not ln.startswith(("+++", "---"))]  # fmt: skip
        lines.append("")
        lines.append("schema change on the branch (Neon's compare_schema, production -> after):")
        lines.extend(f"  {ln}" for ln in changed[:40])
        if len(changed) > 40:
            lines.append(f"  … {len(changed) - 40} more line(s) in --json (details.schema_diff)")
    if ctx.pools:
        lines.append("")
        lines.extend(f"pool: {pool_text(snapshot)}" for snapshot in ctx.pools)
    code = exit_code(ctx)
    failed = [r.id for r in ctx.results.values() if r.status == "fail"]
    verdict = (
        paint("pass", "SAFE TO SHIP")
        if code == 0
        else paint("fail", f"NOT SAFE: {', '.join(failed)}")
    )
    lines.append("")
    lines.append(f"{verdict} (exit {code}, {total_ms / 1000:.1f}s)")
    return "\n".join(lines)
