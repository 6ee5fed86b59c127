"""`rehearsal`: the pending revisions run for real, on a Neon branch, or in a bounded,
rolled-back transaction on production."""

from __future__ import annotations

from sqlalchemy import text

from neon_migrate.check.branch_rehearsal import (
    HOW_TO_BRANCH,
    branch_api,
    rehearse_on_branch,
    verdict,
)
from neon_migrate.check.context import Context, Outcome
from neon_migrate.check.rehearsal import rehearse
from neon_migrate.connection.endpoints import get_endpoints
from neon_migrate.migrate.lock import lock_holder, lock_key
from neon_migrate.settings import get_settings


def check_rehearsal(ctx: Context) -> str:
    """On a Neon branch when the API is reachable (the real upgrade, its locks measured);
    otherwise on production in a rolled-back transaction, bounded, and not at all when
    lint has found a dangerous operation (it would take that lock on production)."""
    if not ctx.pending:
        return "nothing pending to rehearse"
    settings, endpoints = get_settings(), get_endpoints()
    api = branch_api(settings, endpoints)
    if api is not None:
        ctx.rehearsal_mode = "branch"
        pending = [p.revision for p in ctx.pending]
        try:
            result = rehearse_on_branch(api, endpoints.direct, ctx.config_file, ctx.root, pending)
        finally:
            api.close()
        ctx.rehearsed_on_branch = result.drift is not None  # compared after the upgrade
        _production_untouched(ctx)
        limit = settings.check_max_lock_seconds
        setting = "CHECK_MAX_LOCK_SECONDS" if limit else "MIGRATION_LOCK_TIMEOUT"
        status, message, details = verdict(result, limit or settings.migration_lock_timeout,
                                           setting)  # fmt: skip
        if status == "pass":
            ctx.details["rehearsal"] = details
            return message
        raise Outcome(status, message, **details)
    lint = ctx.results.get("lint")
    if lint is not None and lint.status == "fail":
        raise Outcome(
            "skip",
            "not run on production: lint found a dangerous operation, whose lock a rehearsal "
            f"here would take on the live tables; {HOW_TO_BRANCH}",
        )
    return _rehearse_in_transaction(ctx)


def _production_untouched(ctx: Context) -> None:
    """The branch rehearsal's upgrade ran in a process of its own: prove it did not run on
    production (a project's own env.py could read another URL than the one it was given).
    On a new connection: the shared one sat idle through the rehearsal, and the server may
    have ended it (MIGRATION_IDLE_TIMEOUT)."""
    ctx.close()
    conn = ctx.direct()
    table = ctx.version_table()
    now = conn.execute(text(
        "SELECT CASE WHEN to_regclass(:table) IS NULL THEN '' ELSE "
        "(SELECT coalesce(string_agg(version_num, ',' ORDER BY version_num), '') "
        f"FROM {table.sql}) END"
    ), {"table": table.sql}).scalar()  # fmt: skip
    conn.rollback()
    if tuple(filter(None, now.split(","))) != tuple(sorted(ctx.current)):
        raise Outcome(
            "fail",
            f"production's revision changed during the branch rehearsal (now {now or 'empty'},"
            f" was {', '.join(ctx.current) or 'empty'}): the upgrade did not run on the branch",
            exit_code=1,
        )


def _rehearse_in_transaction(ctx: Context) -> str:
    conn = ctx.direct()
    holder = lock_holder(conn, lock_key(ctx.version_table()))
    conn.rollback()
    if holder:  # rehearsing now would wait for it, then rehearse what it already applied
        raise Outcome(
            "fail",
            f"a migration is running now (the migration lock is held by {holder}): "
            "nothing was rehearsed; run the check again when it has finished",
        )
    settings = get_settings()
    limit = settings.check_max_lock_seconds or settings.migration_lock_timeout
    setting = "CHECK_MAX_LOCK_SECONDS" if settings.check_max_lock_seconds else (
        "CHECK_MAX_LOCK_SECONDS (unset: MIGRATION_LOCK_TIMEOUT)")  # fmt: skip
    outcome = rehearse(conn, ctx.config_file, ctx.pending, limit)
    details = {
        "mode": "transaction",
        "max_lock_seconds": limit,
        "cut": outcome.cut,
        "cut_lock": None
        if outcome.cut_lock is None
        else {"table": outcome.cut_lock.table, "mode": outcome.cut_lock.mode},
        "rehearsed": outcome.rehearsed,
        "skipped": outcome.skipped,
        "why_skipped": outcome.why_skipped,
        "sequences_advanced": outcome.sequences_advanced,
        "unchanged": outcome.unchanged,
        "fingerprint": outcome.fingerprint,
    }
    if not outcome.unchanged:
        raise Outcome("fail", "the database changed during the rehearsal", **details)
    if outcome.error:
        raise Outcome("fail", f"a real run would fail: {outcome.error}", **details)
    if outcome.cut:
        stopped = (f"stopped on production after {limit:g} s ({setting}) and rolled back; "
                   "a branch rehearsal measures it on a copy instead")  # fmt: skip
        if outcome.cut_lock is not None:
            raise Outcome(
                "fail",
                f"{outcome.cut} would hold {outcome.cut_lock.words(limit)}: {stopped}",
                **details,
            )
        raise Outcome(
            "warn",
            f"{outcome.cut} ran a statement longer than {limit:g} s, holding no lock that "
            f"blocks the app: {stopped}; not rehearsed from it on",
            **details,
        )
    done = f"{len(outcome.rehearsed)} revision(s) would apply cleanly"
    if outcome.sequences_advanced:  # PostgreSQL never rolls a sequence back
        moved = ", ".join(outcome.sequences_advanced)
        done += f" (sequences advanced, as they never roll back: {moved})"
    if outcome.skipped:
        raise Outcome(
            "warn",
            f"{done}; from {outcome.skipped[0]} on ({outcome.why_skipped}: it cannot run in the "
            f"rehearsal's one transaction), {len(outcome.skipped)} not rehearsed: "
            f"{', '.join(outcome.skipped)}; {HOW_TO_BRANCH}",
            **details,
        )
    ctx.details["rehearsal"] = details
    return (
        f"{done} (on production, rolled back; schema unchanged; no lock held over {limit:g} s:"
        " it sees failures on production's data, not how long a real run's locks last); "
        + HOW_TO_BRANCH
    )
