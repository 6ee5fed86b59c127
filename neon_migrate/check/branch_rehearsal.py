"""Rehearse the pending revisions on a Neon branch: the real upgrade, on a real copy.

A branch is an instant copy-on-write copy of the database the direct endpoint serves, so
the rehearsal can run exactly what `migrate` runs (autocommit blocks and concurrent
indexes included) against production's data and size, time each revision, and watch the
locks it takes, while production itself is not touched. The branch is deleted whatever
happens; its `expires_at` is the safety net if this process dies first.

The branch's endpoint gets the autoscaling limits of production's (a new endpoint would
get the project's default compute, maybe smaller, and lock times measured there would be
longer than production's). Before it is deleted, Neon's own schema diff between it and
production (compare_schema) goes into the report: the DDL the deploy would make. Each
branch is named with PREFIX and marked with ANNOTATION; before creating one, those of
ours past DEADLINE (a killed check's) are deleted, never a branch without both marks.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg2
from sqlalchemy.exc import SQLAlchemyError

from neon_migrate.check.locks import LockHold, LockSampler
from neon_migrate.connection import urls
from neon_migrate.errors import ConfigError, HarnessError
from neon_migrate.migrate.progress import PROGRESS_FD

PREFIX = "neon-migrate-rehearsal-"  # every branch we make, so a stale one can be named
ANNOTATION = {"neon-migrate": "pre-deploy-rehearsal"}  # annotation_value: ours, for sure
LIFETIME = timedelta(hours=1)  # expires_at: how long a branch outlives a killed check
DEADLINE = LIFETIME - timedelta(minutes=5)  # the upgrade on the copy, before it expires


@dataclass
class BranchRehearsal:
    branch: str
    parent: str
    applied: list[tuple[str, float]] = field(default_factory=list)  # (revision, ms)
    holds: list[LockHold] = field(default_factory=list)
    error: str | None = None  # what the real upgrade hit on the copy
    drift: list[str] | None = None
    lock_error: str | None = None  # the lock sampler lost its connection: not measured
    deleted: bool = False
    delete_error: str | None = None
    stale: list[str] = field(default_factory=list)  # earlier rehearsal branches still there
    stale_deleted: list[str] = field(default_factory=list)  # ours, past DEADLINE: removed
    seconds: dict[str, float] = field(default_factory=dict)  # create, upgrade, compare, delete
    compute: dict[str, float] = field(default_factory=dict)  # min_cu, max_cu of the copy's
    schema_diff: str | None = None  # Neon's compare_schema: production -> after the upgrade
    schema_diff_error: str | None = None
    api_calls: int = 0  # requests to Neon's API for this rehearsal, retries included


def rehearse_on_branch(
    api, direct_url: str, config_file: str | None, root: Path, expected: list[str]
) -> BranchRehearsal:
    """Create a child of the branch `direct_url` serves, run the upgrade there, compare the
    models, delete it. `api` is a `neon_migrate.branches.api.NeonApi`; `expected` are the
    pending revisions, which the run on the copy must report back, each of them."""
    host = urls.host_of(direct_url)
    endpoint = api.endpoint_of_host(host)
    if endpoint is None:
        raise ConfigError(
            f"no endpoint of Neon project {api.project_id} has the host {host}",
            "set NEON_PROJECT_ID to the project DATABASE_URL_DIRECT points at",
        )
    parent = str(endpoint["branch_id"])
    compute = {k: endpoint[k] for k in COMPUTE if isinstance(endpoint.get(k), (int, float))}
    stale, stale_deleted = _clear_stale(api)
    name = f"{PREFIX}{datetime.now(UTC):%Y%m%d-%H%M%S}-{secrets.token_hex(3)}"
    started = time.monotonic()
    try:
        created = api.create_branch(parent, name, datetime.now(UTC) + LIFETIME,
                                    annotation=ANNOTATION, compute=compute)  # fmt: skip
    except HarnessError as err:
        if stale and getattr(err, "code", None) == "BRANCHES_LIMIT_EXCEEDED":
            raise err.amended(
                f"branches named as rehearsals still there (deleted by the check only when "
                f"marked as its own and over {DEADLINE.seconds // 60} min old): {', '.join(stale)}"
            ) from None
        raise
    result = BranchRehearsal(branch=name, parent=parent, stale=stale,
                             stale_deleted=stale_deleted)  # fmt: skip
    result.compute = {k.removeprefix("autoscaling_limit_"): v for k, v in compute.items()}
    setup_error: HarnessError | None = None
    parsed = urls.to_sqlalchemy(direct_url)  # the same database and role, on the copy
    try:
        try:
            api.wait_for_operations(created.operation_ids, deadline_s=300)
            uri = api.connection_uri(
                created.branch_id, created.endpoint_id, parsed.database, parsed.username
            )
        except HarnessError as err:  # Neon's, not the revisions': said as such, below
            setup_error = err
            raise
        result.seconds["create"] = time.monotonic() - started
        _upgrade(uri, config_file, root, result)
        missing = [r for r in expected if r not in {rev for rev, _ in result.applied}]
        if result.error is None and missing:  # not our env.py, or not the copy it ran on
            result.error = (
                f"the upgrade on the copy did not report {', '.join(missing)} through the "
                "harness (is migrations/env.py the harness's, reading DATABASE_URL_DIRECT?)"
            )
        if result.error is None:
            started = time.monotonic()
            result.drift = _drift(uri, config_file)
            result.seconds["compare"] = time.monotonic() - started
        if result.applied:
            try:
                diff = api.compare_schema(created.branch_id, parent, parsed.database)
                result.schema_diff = _SECRET_OPTION.sub(r"\1'***'", diff)
            except HarnessError as err:  # evidence only: its absence is said, not fatal
                result.schema_diff_error = str(err)
    except (HarnessError, OSError, psycopg2.Error, SQLAlchemyError) as exc:
        if setup_error is None:
            result.error = _one_line(exc)  # said with the branch's fate, below
    finally:
        started = time.monotonic()
        try:
            api.delete_branch(created.branch_id)
            result.deleted = True
        except HarnessError as err:  # reported, never hidden: the expiry still removes it
            result.delete_error = str(err)
        result.seconds["delete"] = time.monotonic() - started
        result.api_calls = api.requests
    if setup_error is not None:
        if result.delete_error:
            raise setup_error.amended(f"branch {name} was NOT deleted ({result.delete_error})")
        raise setup_error
    return result


COMPUTE = ("autoscaling_limit_min_cu", "autoscaling_limit_max_cu")
# A schema dump holds a foreign server's user mapping options, passwords included.
_SECRET_OPTION = re.compile(r"\b(password\s+)'(?:[^']|'')*'", re.IGNORECASE)


def _clear_stale(api) -> tuple[list[str], list[str]]:
    """(ours still there, ours deleted now): branches named PREFIX… *and* annotated as
    ours that were created more than DEADLINE ago, or have expired, are a killed check's
    (a running check's upgrade ends by DEADLINE): deleted, so they do not count against
    the plan's branch limit. Younger ones may be another check's: only named."""
    now = datetime.now(UTC)
    left, deleted = [], []
    for branch in api.branches(search=PREFIX):
        name = str(branch.get("name", ""))
        if not name.startswith(PREFIX):
            continue
        ours = branch.get("annotation_value") == ANNOTATION
        created = _moment(branch.get("created_at"))
        expires = _moment(branch.get("expires_at"))
        old = (created is not None and now - created > DEADLINE) or (
            expires is not None and expires <= now
        )
        if ours and old:
            try:
                api.delete_branch(str(branch["id"]), wait_s=None)
                deleted.append(name)
                continue
            except HarnessError:  # named below, as before
                pass
        left.append(name)
    return left, deleted


def _moment(value) -> datetime | None:
    try:
        return datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None


def _one_line(exc: BaseException) -> str:
    if isinstance(exc, HarnessError):
        return str(exc)
    return urls.mask_text(" ".join(f"{type(exc).__name__}: {exc}".split()))


def _upgrade(uri: str, config_file: str | None, root: Path, result: BranchRehearsal) -> None:
    """`alembic upgrade head` on the branch, through the project's env.py: the same code
    path as a deploy, in its own process, watched by the lock sampler. The revisions it
    runs come back as JSON lines on a pipe of their own (progress.announce), whatever the
    project's logging does with its log lines."""
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL_UNPOOLED"}
    env.update(DATABASE_URL=uri, DATABASE_URL_DIRECT=uri)
    if config_file:
        env["ALEMBIC_CONFIG"] = str(Path(config_file).resolve())
    sampler = LockSampler(urls.to_target(uri).dsn)
    sampler.start()
    started = time.monotonic()
    read_end, write_end = os.pipe()
    env[PROGRESS_FD] = str(write_end)
    with tempfile.TemporaryFile("w+") as output:
        try:
            process = subprocess.Popen(
                [sys.executable, "-m", "alembic", "upgrade", "head"], cwd=root, env=env,
                stdout=output, stderr=subprocess.STDOUT, pass_fds=(write_end,),
            )  # fmt: skip
        finally:
            os.close(write_end)  # the child holds it; EOF comes when the child ends
        watchdog = threading.Timer(DEADLINE.total_seconds(), process.kill)
        watchdog.start()
        try:
            with os.fdopen(read_end) as events:
                for line in events:
                    _event(json.loads(line), sampler, result)
            process.wait()
        finally:
            watchdog.cancel()
            if process.poll() is None:  # interrupted here: the child does not outlive us
                process.kill()
                process.wait()
            result.holds = sampler.stop()
        result.seconds["upgrade"] = time.monotonic() - started
        if sampler.error:
            result.lock_error = sampler.error
        if process.returncode != 0:
            output.seek(0)
            lines = [line.strip() for line in output if line.strip()]
            failed = [line for line in lines if line.startswith(("FAILED:", "error:"))]
            last = failed[-1].split(":", 1)[1].strip() if failed else (lines[-1] if lines else "")
            if process.returncode < 0:
                last = f"it did not finish within {DEADLINE} (the branch expires after {LIFETIME})"
            result.error = urls.mask_text(last or f"alembic upgrade exited {process.returncode}")


def _event(event: dict, sampler: LockSampler, result: BranchRehearsal) -> None:
    if event.get("direction") != "upgrade":
        return
    if event["event"] == "start":
        sampler.current = event["revision"]
    else:
        sampler.current = None
        result.applied.append((event["revision"], float(event.get("ms") or 0)))


def _drift(uri: str, config_file: str | None) -> list[str] | None:
    from sqlalchemy import create_engine
    from sqlalchemy.pool import NullPool

    from neon_migrate.check.rehearsal import drift

    engine = create_engine(urls.to_sqlalchemy(uri), poolclass=NullPool)
    try:
        with engine.connect() as conn:
            return drift(conn, config_file)
    finally:
        engine.dispose()


HOW_TO_BRANCH = (
    "set NEON_API_KEY and NEON_PROJECT_ID (and install neon-migrate[check]) to rehearse on "
    "a Neon branch instead: the real upgrade, on a copy, with its locks measured"
)


def branch_api(settings, endpoints):
    """The Neon API (or the local twin's stand-in) to branch with; None without one."""
    key, project = settings.neon_api_key, settings.neon_project_id
    if bool(key) != bool(project):
        missing = "NEON_PROJECT_ID" if key else "NEON_API_KEY"
        raise ConfigError(f"{missing} is not set, and a branch rehearsal needs both",
                          f"set {missing}, or unset both to rehearse on production")  # fmt: skip
    twin_api = endpoints.local.api if endpoints.local is not None else None
    if not key and twin_api is None:
        return None
    try:
        from neon_migrate.branches.api import NeonApi
    except ImportError as exc:  # httpx: the [check] extra
        raise ConfigError(
            f"a branch rehearsal needs the [check] extra ({exc.name} is not installed)",
            "pip install 'neon-migrate[check]' where the check runs",
        ) from None
    if key:
        return NeonApi(settings.neon_api_url, key, project)
    # The twin's stand-in: the same code path on every machine.
    return NeonApi(twin_api.base_url, twin_api.api_key, twin_api.project_id)


def verdict(result: BranchRehearsal, max_seconds: float, setting: str) -> tuple[str, str, dict]:
    """(status, message, details) for the check's report. Whatever the outcome, it says
    what became of the branch when it was not deleted."""

    size = result.compute
    on = (
        f", compute {size['min_cu']:g}-{size['max_cu']:g} CU as production's"
        if len(size) == 2
        else ""
    )
    where = f"on branch {result.branch} (a copy of {result.parent}{on})"
    details = {
        "mode": "branch",
        "branch": result.branch,
        "parent": result.parent,
        "rehearsed": [revision for revision, _ in result.applied],
        "durations_ms": dict(result.applied),
        "locks": [_lock_details(h) for h in result.holds],
        "locks_error": result.lock_error,
        "drift": result.drift,
        "deleted": result.deleted,
        "delete_error": result.delete_error,
        "stale_branches": result.stale,
        "stale_deleted": result.stale_deleted,
        "seconds": {k: round(v, 2) for k, v in result.seconds.items()},
        "compute": result.compute,  # the copy's autoscaling limits: the locks' context
        "schema_diff": result.schema_diff,  # Neon's compare_schema, production -> branch
        "schema_diff_error": result.schema_diff_error,
        "api_calls": result.api_calls,
    }
    notes = []
    if result.delete_error:
        notes.append(
            f"branch {result.branch} was NOT deleted ({result.delete_error}); it expires by "
            "itself within the hour"
        )
    if result.stale_deleted:
        notes.append(f"deleted {len(result.stale_deleted)} stale rehearsal branch(es) of "
                     f"killed checks: {', '.join(result.stale_deleted)}")  # fmt: skip
    if result.stale:
        stale = ", ".join(result.stale)
        notes.append(
            f"stale rehearsal branch(es) from an earlier check: {stale} (each expires by "
            "itself; delete it in the console to free it now)"
        )
    status, message = _outcome(result, where, max_seconds, setting)
    if result.lock_error and status == "pass":
        status, message = "warn", f"{message}; locks not measured: {result.lock_error}"
    if notes:
        status = "warn" if status == "pass" and (result.stale or result.delete_error) else status
        message = f"{message}; {'; '.join(notes)}"
    return status, message, details


def _outcome(result: BranchRehearsal, where: str, max_seconds: float, setting: str):
    from neon_migrate.check.locks import too_long

    if result.error:
        return "fail", f"a real run would fail {where}: {result.error}"
    long = too_long(result.holds, max_seconds)
    if long:
        said = "; ".join(f"{h.revision} would hold {h.words()} (blocks {h.blocks})" for h in long)
        size = result.compute
        measured = (f" (measured on a compute of {size['min_cu']:g}-{size['max_cu']:g} CU, as "
                    "production's, with a cold cache)" if len(size) == 2 else "")  # fmt: skip
        return "fail", f"{said}: over {setting}={max_seconds:g} s, the app would wait{measured}"
    if result.drift:
        return ("fail", f"applied cleanly {where}, but the models differ from the result: "
                f"{'; '.join(result.drift)}")  # fmt: skip
    blocking = [h for h in result.holds if h.existing and h.blocks]
    locks = "; ".join(f"{h.revision}: {h.words()}" for h in blocking) or "none that block the app"
    ms = sum(ms for _, ms in result.applied)
    took = f"{ms / 1000:.1f} s" if ms >= 1000 else f"{ms:.0f} ms"
    compared = " and match the models" if result.drift is not None else ""
    return (
        "pass",
        f"{len(result.applied)} revision(s) applied {where} in {took}{compared}; locks: {locks}",
    )


def _lock_details(hold) -> dict:
    return {
        "revision": hold.revision,
        "table": hold.table,
        "mode": hold.mode,
        "seconds": round(hold.seconds, 3),
        "blocks": hold.blocks,
        "existing_table": hold.existing,
    }
