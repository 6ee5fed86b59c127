"""`plan`: what would be applied, rendered offline."""

from __future__ import annotations

from neon_migrate.check.context import Context, Outcome
from neon_migrate.check.plan import plan
from neon_migrate.migrate import fast_path


def check_plan(ctx: Context) -> str:
    direct = ctx.health.get("direct")
    version = fast_path.version_of(direct.server_version) if direct else ()
    ctx.pending = plan(ctx.config_file, ctx.script, ctx.current, version)
    if not ctx.pending:
        return f"nothing to apply: at head {ctx.script.get_current_head()}"
    steps = ", ".join(f"{r.revision} ({r.message}; {r.how})" for r in ctx.pending)
    lines = sum(r.sql.count("\n") for r in ctx.pending)
    done = f"{len(ctx.pending)} pending, in order: {steps}; offline SQL renders ({lines} lines)"
    online = [r for r in ctx.pending if r.online_only]
    if online:
        named = "; ".join(f"{r.revision} {r.online_only}" for r in online)
        raise Outcome(
            "warn",
            f"{done} but for {len(online)} that only run online (make migrate runs them; "
            f"`make sql` marks where): {named}",
            online_only={r.revision: r.online_only for r in online},
        )
    return done
