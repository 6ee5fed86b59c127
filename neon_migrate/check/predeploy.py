"""The pre-deploy check: is this build safe to ship to this database? Changes nothing.

Checks run in order, each reading what earlier ones found; a check whose prerequisite did
not pass is skipped with the reason. Exit codes (a contract: the README's table states it):
0 every check passed (warnings allowed), 1 a check failed, 2 configuration or usage error,
3 a database endpoint unreachable.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import psycopg2.extensions
from alembic.script import ScriptDirectory
from sqlalchemy import text
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError

from neon_migrate import project
from neon_migrate.check import lint as linting
from neon_migrate.check.branch_rehearsal import (
    HOW_TO_BRANCH,
    branch_api,
    rehearse_on_branch,
    verdict,
)
from neon_migrate.check.plan import PlannedRevision, plan
from neon_migrate.check.rehearsal import drift, rehearse
from neon_migrate.connection import urls
from neon_migrate.connection.connect import connect, driver_message
from neon_migrate.connection.endpoints import WEAK_SSLMODES, get_endpoints
from neon_migrate.connection.engines import get_migration_engine
from neon_migrate.connection.health import check_connection
from neon_migrate.errors import ConfigError, HarnessError, UnreachableError
from neon_migrate.migrate import fast_path
from neon_migrate.migrate.heads import graph, script_files
from neon_migrate.migrate.lock import lock_holder, lock_key
from neon_migrate.migrate.status import read_status
from neon_migrate.observe.figures import endpoint_figures, endpoint_text
from neon_migrate.observe.pool_stats import all_stats
from neon_migrate.observe.sizing import fleet_warning
from neon_migrate.settings import get_settings

NO_MODELS = "no models to compare: set target_metadata = module:attribute in alembic.ini"
BIG_TABLE_ROWS = 100_000


@dataclass
class Result:
    id: str
    status: str  # pass | warn | fail | skip
    message: str
    duration_ms: float = 0.0
    exit_code: int = 0  # set on fail: 1, 2 or 3
    details: dict = field(default_factory=dict)


@dataclass
class Context:
    config_file: str
    root: Path
    results: dict[str, Result] = field(default_factory=dict)
    health: dict = field(default_factory=dict)
    script: ScriptDirectory | None = None
    current: tuple[str, ...] = ()
    pending: list[PlannedRevision] = field(default_factory=list)
    findings: list[linting.Finding] = field(default_factory=list)
    details: dict[str, dict] = field(default_factory=dict)  # a passing check's details
    pools: list = field(default_factory=list)  # PoolSnapshot of each engine the run used
    rehearsal_mode: str | None = None  # "branch" when a branch was made for it
    rehearsed_on_branch: bool = False  # the drift after the pending revisions was compared
    _direct: Connection | None = None

    def direct(self) -> Connection:
        """The one connection to the direct endpoint that lint, rehearsal and drift share:
        on Neon every connect is a TLS handshake, and a compute may be waking up."""
        if self._direct is None:
            self._direct = connect(
                get_migration_engine(),
                retry_seconds=get_settings().db_connect_retry_seconds,
                variable=get_endpoints().direct_variable,
                migrations=True,
            )
        return self._direct

    def close(self) -> None:
        if self._direct is not None:
            self._direct.close()
            self._direct = None

    def passed(self, check_id: str) -> bool:
        result = self.results.get(check_id)
        return result is not None and result.status in ("pass", "warn")


class Outcome(Exception):
    """How a check ends other than passing: `raise Outcome("warn", "...")`."""

    def __init__(self, status: str, message: str, exit_code: int = 1, **details) -> None:
        super().__init__(message)
        self.status, self.message, self.exit_code, self.details = (
            status,
            message,
            exit_code,
            details,
        )


# --- the checks ---------------------------------------------------------------------------------
def check_config(ctx: Context) -> str:
    get_settings()
    endpoints = get_endpoints()
    pair = endpoints.pair
    libpq = psycopg2.extensions.libpq_version()
    problems = []
    if pair.neon:
        if not urls.is_pooled(pair.pooled):
            problems.append(
                f"the app's URL ({urls.host_of(pair.pooled)}) is not the pooled "
                "endpoint: put the -pooler host in DATABASE_URL"
            )
        if libpq < 140000:
            problems.append(f"libpq {libpq // 10000} has no SNI, which Neon needs: use libpq 14+")
    for name, url in (("DATABASE_URL", pair.pooled), ("DATABASE_URL_DIRECT", pair.direct)):
        mode = _query_value(url, "sslmode")
        if not urls.is_local_host(urls.host_of(url)) and mode in WEAK_SSLMODES:
            problems.append(f"{name} has sslmode={mode}: use require or verify-full")
    if problems:
        raise Outcome("fail", "; ".join(problems), exit_code=2)
    where = "local twin" if endpoints.local else ("Neon" if pair.neon else "PostgreSQL")
    derived = f", {pair.derived} URL derived" if pair.derived else ""
    return (
        f"{where}: direct {urls.host_of(pair.direct)}, pooled {urls.host_of(pair.pooled)}"
        f"{derived}; libpq {libpq // 10000}.{libpq % 10000}"
    )


def _query_value(url: str, key: str) -> str | None:
    query = url.partition("?")[2]
    values = [p.partition("=")[2] for p in query.split("&") if p.partition("=")[0] == key]
    return values[-1] if values else None


def _check_endpoint(ctx: Context, endpoint: str) -> str:
    """The figures /health/db reports, under the same keys, in the check's details."""
    health = check_connection(endpoint)  # type: ignore[arg-type]
    ctx.health[endpoint] = health
    try:
        known, heads = graph(*project.config_files(ctx.config_file or None))
    except Exception:  # a broken graph: the `scripts` check says what is wrong with it
        known, heads = None, None
    figures = endpoint_figures(health, heads, known)
    if endpoint == "pooled":  # the same database: its indexes are the direct check's
        figures["invalid_indexes"] = []
    summary = endpoint_text(figures, health.local)
    if not health.ssl_in_use and not health.local:
        raise Outcome("fail", f"{summary}: TLS is required for a non-local host", **figures)
    if figures["invalid_indexes"]:  # make migrate's verify fails on them: so does the check
        raise Outcome(
            "fail",
            f"{summary}: a concurrent index build failed (or is running now); if no "
            "migration runs, DROP INDEX CONCURRENTLY each, then migrate again",
            **figures,
        )
    ctx.details[endpoint] = figures
    return summary


def check_direct(ctx: Context) -> str:
    return _check_endpoint(ctx, "direct")


def check_pooled(ctx: Context) -> str:
    """The app's endpoint; and whether the pools of DB_POOL_PROCESSES processes fit the
    server's ceiling (a warning when not: the build is fine, its sizing may not be)."""
    summary = _check_endpoint(ctx, "pooled")
    health = ctx.health["pooled"]
    if not health.max_connections:
        return summary
    warning, pools = fleet_warning(health.max_connections, health.reserved_connections)
    if warning:
        raise Outcome("warn", f"{summary}; {warning}", **ctx.details.pop("pooled"), pools=pools)
    ctx.details["pooled"]["pools"] = pools
    return summary


def check_scripts(ctx: Context) -> str:

    try:
        ctx.script = ScriptDirectory.from_config(project.alembic_config(ctx.config_file))
    except Exception as exc:  # no script_location, or not a folder
        raise Outcome("fail", f"no migrations folder: {' '.join(str(exc).split())}") from None
    files = script_files(ctx.script)
    if not files:
        versions = ", ".join(ctx.script.version_locations) or Path(ctx.script.dir, "versions")
        ctx.script = None
        raise Outcome(
            "fail",
            f"no revision files in {versions}: nothing to deploy; write the first with "
            '`make revision m="create tables"`',
        )
    broken = [p for path in files if (p := _import_problem(path))]
    if broken:
        ctx.script = None
        raise Outcome("fail", "; ".join(broken))
    try:
        heads = ctx.script.get_heads()
        scripts = list(ctx.script.walk_revisions())
    except Exception as exc:  # a broken graph: a down_revision naming no revision, a cycle
        ctx.script = None
        raise Outcome(
            "fail",
            f"the revision graph is broken: {type(exc).__name__}: {' '.join(str(exc).split())}",
        ) from None
    undone = [s.revision for s in scripts if _downgrade_does_nothing(s)]
    warning = (
        f"downgrade() does nothing and is not marked irreversible in {', '.join(undone)}: "
        "write it, or say it has none (raise NotImplementedError('irreversible: <why>'))"
        if undone
        else ""
    )
    if len(heads) != 1:  # the one failure here that leaves the graph readable: say it all
        raise Outcome(
            "fail",
            f"{len(heads)} heads ({', '.join(sorted(heads))}): merge them with "
            "`alembic merge heads -m merge`" + (f"; also: {warning}" if warning else ""),
            no_downgrade=undone,
        )
    summary = f"{len(scripts)} revision(s), one head {heads[0]}, every file imports"
    if undone:
        raise Outcome("warn", f"{summary}; {warning}", no_downgrade=undone)
    return f"{summary}, every downgrade is written or marked irreversible"


def _import_problem(path: Path) -> str | None:
    """Why a revision file cannot be loaded, or would fail on a name once it runs; None if
    neither. Importing runs only the top level, so names inside upgrade() are read."""
    import importlib.util

    from neon_migrate.migrate.undefined_names import problem

    spec = importlib.util.spec_from_file_location(f"_predeploy_{path.stem}", path)
    try:
        spec.loader.exec_module(importlib.util.module_from_spec(spec))  # type: ignore[union-attr]
    except Exception as exc:
        return f"{path.name} does not import: {type(exc).__name__}: {' '.join(str(exc).split())}"
    return problem(path)


def _downgrade_does_nothing(script) -> bool:
    """A downgrade of `pass` that neither merges (a merge has nothing to undo), follows an
    empty upgrade, nor says it is irreversible (`raise ...`, or the word irreversible in it
    or in a comment right above it)."""
    import ast

    if isinstance(script.down_revision, (tuple, list)) and len(script.down_revision) > 1:
        return False
    source = Path(script.path).read_text()
    functions = {n.name: n for n in ast.parse(source).body if isinstance(n, ast.FunctionDef)}
    downgrade = functions.get("downgrade")
    if downgrade is None:
        return True
    if _only_pass(functions.get("upgrade")):
        return False
    marked = (
        any(isinstance(n, ast.Raise) for n in ast.walk(downgrade))
        or "irreversible" in (ast.get_source_segment(source, downgrade) or "").lower()
        or _comment_above(source, downgrade)
    )
    return _only_pass(downgrade) and not marked


def _only_pass(function) -> bool:
    """A function whose body is `pass` (and docstrings): it does nothing."""
    import ast

    if function is None:
        return False
    return all(
        isinstance(n, ast.Pass) or (isinstance(n, ast.Expr) and isinstance(n.value, ast.Constant))
        for n in function.body
    )


def _comment_above(source: str, node) -> bool:
    """`# irreversible: ...` on the lines right above `def downgrade`."""
    lines = source.splitlines()[: node.lineno - 1]
    for line in reversed(lines):
        stripped = line.strip()
        if not stripped.startswith(("#", "@")):
            return False
        if "irreversible" in stripped.lower():
            return True
    return False


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


def _version_table(ctx: Context) -> project.VersionTable:
    return project.version_table(project.alembic_config(ctx.config_file or None))


def check_validate(ctx: Context) -> str:
    """Applied revisions still match their files (their checksums in the history), and
    every revision the database is at has a file."""
    status = read_status(ctx.script, ctx.direct(), _version_table(ctx))
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
    table = _version_table(ctx)
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
    holder = lock_holder(conn, lock_key(_version_table(ctx)))
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
