"""`drift`: the models match the database."""

from __future__ import annotations

from neon_migrate.check.branch_rehearsal import HOW_TO_BRANCH
from neon_migrate.check.context import Context, Outcome
from neon_migrate.check.rehearsal import drift

NO_MODELS = "no models to compare: set target_metadata = module:attribute in alembic.ini"


def check_drift(ctx: Context) -> str:
    if ctx.pending and ctx.rehearsed_on_branch:
        return f"{len(ctx.pending)} revision(s) pending: the branch rehearsal compared the models"
    if ctx.pending and ctx.rehearsal_mode == "branch":
        raise Outcome("skip", "not compared: the branch rehearsal stopped before it (see above)")
    if ctx.pending:  # never while production's tables are locked by a rehearsal
        raise Outcome(
            "skip",
            f"{len(ctx.pending)} revision(s) pending: the models are compared with the result "
            f"on a branch only; {HOW_TO_BRANCH}",
        )
    conn = ctx.direct()
    differences = drift(conn, ctx.config_file)
    conn.rollback()
    if differences is None:
        raise Outcome("warn", NO_MODELS)
    if differences:
        raise Outcome(
            "fail",
            f"the database differs from the models: {'; '.join(differences)}",
            drift=differences,
        )
    return "the models match the database"
