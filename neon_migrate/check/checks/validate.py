"""`validate`: applied revisions still match their files."""

from __future__ import annotations

from neon_migrate.check.context import Context, Outcome
from neon_migrate.migrate.status import read_status


def check_validate(ctx: Context) -> str:
    """Applied revisions still match their files (their checksums in the history), and
    every revision the database is at has a file."""
    status = read_status(ctx.script, ctx.direct(), ctx.version_table())
    if status.problems:
        raise Outcome(
            "fail",
            "; ".join(status.problems),
            edited=[e.revision for e in status.revisions if e.checksum == "edited"],
            missing=[e.revision for e in status.revisions if e.state == "missing"],
        )
    applied = status.count(state="applied")
    if not applied:
        return "no revision applied yet: nothing to compare"
    unrecorded = status.count(checksum="no record")
    return (
        f"{applied} applied revision(s) match their files ({applied - unrecorded} recorded, "
        f"{unrecorded} applied before the history)"
    )
