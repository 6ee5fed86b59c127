"""`revision`: the database is at a revision these scripts know."""

from __future__ import annotations

from alembic.script import ScriptDirectory

from neon_migrate.check.context import Context, Outcome


def check_revision(ctx: Context) -> str:
    ctx.current = ctx.health["direct"].revisions
    unknown = [rev for rev in ctx.current if _unknown(ctx.script, rev)]
    if unknown:
        raise Outcome(
            "fail",
            f"the database is at {', '.join(unknown)}, which these scripts do "
            "not know: it is ahead of this build (an older build is being "
            "deployed?) or was migrated from another branch",
        )
    return f"database at {', '.join(ctx.current) or 'no revision (empty)'}, known to the scripts"


def _unknown(script: ScriptDirectory, revision: str) -> bool:
    try:
        return script.get_revision(revision) is None
    except Exception:
        return True
