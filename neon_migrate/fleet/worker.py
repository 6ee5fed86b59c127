"""One target's run, in a process of its own: `neon-migrate migrate` with its environment.

A process per target, because Alembic's `context`, the harness's settings, endpoints and
engines, and the signal handlers that cancel a running statement are all process-wide:
threads would share one database's. Each process is forked from a fork server that has
already imported Alembic, SQLAlchemy and psycopg2 (multiprocessing's `forkserver` with
`set_forkserver_preload`), so a target does not pay an interpreter's start-up and those
imports. The harness's own modules are imported after the fork, in each process:
`neon_migrate.connection.targets` draws the migration sessions' token at import, and
every process must have its own.

The process first reads the database's revision (one connection, one query): a target
already at the wanted revision ends there, which is what makes a rerun cheap. Otherwise
it runs `neon-migrate migrate` itself (cli.main, in this process), so the target gets
everything that command does: the direct door only, the advisory lock, timeouts, a
transaction per revision, the read-back, verify of both doors, and SIGTERM / SIGINT
cancelling the running statement. Its output goes to a file; the result (a small dict)
goes back to the runner through a pipe.
"""

from __future__ import annotations

import io
import json
import os
import re
import signal
import sys
import tempfile
from dataclasses import dataclass, field
from typing import Any

from neon_migrate.migrate import signals  # imports only errors: fine in the runner too

PRELOAD = [
    "alembic.command",
    "alembic.runtime.environment",
    "alembic.runtime.migration",
    "alembic.script",
    "sqlalchemy",
    "sqlalchemy.dialects.postgresql.psycopg2",
    "sqlalchemy.orm",
    "psycopg2",
    "psycopg2.extras",
    "sqlmodel",  # the example's (and many projects') models
    "pydantic_settings",
    "tenacity",
    "neon_migrate.settings",
    "neon_migrate.connection.urls",
]
LOG_TAIL = 20_000  # characters of a target's own output kept for the report (-v)


@dataclass(frozen=True)
class Job:
    """What one target's process needs. `variables` hold its URLs: never shown."""

    name: str
    action: str  # "migrate", "dry-run" or "status"
    variables: dict[str, str] = field(repr=False)
    wanted: tuple[str, ...]  # the revisions a run ends at
    to: str | None = None  # --to as given; None: head
    known: frozenset[str] = frozenset()  # every revision the scripts have
    below: frozenset[str] | None = None  # with --to: the revisions it may upgrade from
    renames: dict[str, str] = field(default_factory=dict)  # for messages: our names -> file's


def context():
    """The fork server, started (once per run) with the heavy imports done."""
    import multiprocessing
    from multiprocessing import forkserver

    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(PRELOAD)
    forkserver.ensure_running()
    return ctx


SIGNALS = (signal.SIGINT, signal.SIGTERM)
_armed = True  # False once the outcome is known: a signal then must not lose it
_migrating = False  # `migrate` has been called: a signal may have stopped it anywhere


def _interrupt(signum: int, frame) -> None:
    """Until the outcome is known, SIGTERM stops the run as SIGINT does, recorded where
    `migrate` records its own signals: whatever the phase, the error names the signal."""
    if _armed:
        signals.interrupt(signum, frame)


def _signal_name() -> str:
    return signal.Signals(signals.received() or signal.SIGINT).name


def run(job: Job, writer) -> None:
    """The process's entry point: run the job, send its result, whatever happens."""
    os.setpgrp()  # a terminal's Ctrl-C reaches the runner only; it forwards one signal
    with tempfile.TemporaryFile() as log:
        os.dup2(log.fileno(), 1)
        os.dup2(log.fileno(), 2)
        result = _outcome(job)
        for sig in SIGNALS:  # done: the result must get out
            signal.signal(sig, signal.SIG_IGN)
        sys.stderr.flush()
        log.seek(0)
        result["log"] = log.read().decode("utf-8", "replace")[-LOG_TAIL:]
    for key in ("error", "log"):
        if result.get(key):
            result[key] = _renamed(result[key], job.renames)
    writer.send(result)
    writer.close()


def _outcome(job: Job) -> dict[str, Any]:
    """The job's result. A signal before the handlers are set kills the process (the
    runner says so); from then on until the outcome is known it is a KeyboardInterrupt,
    caught by `migrate` (which says what it stopped) or here; after, it changes nothing."""
    global _armed
    from neon_migrate.errors import HarnessError

    try:
        try:
            for sig in SIGNALS:
                signal.signal(sig, _interrupt)
            signal.pthread_sigmask(signal.SIG_UNBLOCK, SIGNALS)
            return _run(job)
        finally:
            _armed = False  # a plain store, first: no handler runs before it
    except KeyboardInterrupt:
        name = _signal_name()
        error = f"interrupted by {name} before it changed anything; nothing was migrated"
        if _migrating:  # it came out of `migrate` (before its handling began, or a second one)
            error = (
                f"interrupted by {name} while `migrate` ran, before it reported. Fix: see "
                "where it is with `neon-migrate fleet status`"
            )
        return _failed(error, 128 + signal.Signals[name].value)
    except HarnessError as err:
        return _failed(str(err), err.exit_code)
    except Exception as err:
        import traceback

        traceback.print_exc()
        return _failed(f"unexpected {type(err).__name__}: {err} (a bug: see -v)", 1)


def _failed(error: str, exit_code: int, **more: Any) -> dict[str, Any]:
    outcome = "unreachable" if exit_code == 3 else "failed"
    return {"outcome": outcome, "error": error, "exit_code": exit_code, **more}


def _renamed(text: str, renames: dict[str, str]) -> str:
    """Migrate's messages name DATABASE_URL_DIRECT; the user knows the file's variable."""
    return re.sub(r"\bDATABASE_URL(?:_DIRECT)?\b", lambda m: renames.get(m[0], m[0]), text)


def revision_text(revisions) -> str:
    return ", ".join(revisions) or "base"


def _run(job: Job) -> dict[str, Any]:
    os.environ.pop("DATABASE_URL_UNPOOLED", None)
    os.environ.update(job.variables)
    from neon_migrate.commands import output
    from neon_migrate.connection import waiting
    from neon_migrate.connection.health import check_connection
    from neon_migrate.settings import get_settings

    output.configure(verbose=False, colour=False)
    waiting.install(get_settings().db_connect_timeout)
    health = check_connection("direct")  # one connection, one query
    current = tuple(sorted(health.revisions))
    seen = {"from": revision_text(current), "revisions": list(current)}
    if job.action == "status":
        return {"outcome": "read", **seen}
    if current == tuple(sorted(job.wanted)):
        problem = _direct_door_problem(health)
        if problem:
            return _failed(problem, 1, to=seen["from"], **seen)
        return {"outcome": "at-head", "to": seen["from"], **seen}
    unknown = [r for r in current if r not in job.known]
    if unknown:
        return _failed(
            f"the database is at {', '.join(unknown)}, which these scripts do not have "
            "(ahead of them, or another project's database); nothing was changed. Fix: "
            "deploy the code that has it, or check that DATABASE_URL_DIRECT names the "
            "right database",
            1,
            **seen,
        )
    if job.below is not None and any(r not in job.below for r in current):
        return _failed(
            f"the database is at {seen['from']}, past --to {job.to}; nothing was changed. "
            "Fix: choose a later --to, or downgrade this database on its own",
            1,
            **seen,
        )
    if job.action == "dry-run":
        return {"outcome": "not-run", **seen}
    return _migrate(job) | seen


def _direct_door_problem(health) -> str | None:
    """What `migrate` at head would fail on for the direct door (verify's direct item)."""
    if health.invalid_indexes:
        return (
            f"INVALID indexes: {', '.join(health.invalid_indexes)} (a concurrent index "
            "build failed, or is running now). Fix: if no migration runs, DROP INDEX "
            "CONCURRENTLY each, then migrate again"
        )
    if not (health.ssl_in_use or health.local):
        return "SSL NOT in use on a non-local host. Fix: add sslmode=require to DATABASE_URL_DIRECT"
    return None


def _migrate(job: Job) -> dict[str, Any]:
    """`neon-migrate migrate --json` in this process; its JSON document read back."""
    from neon_migrate import cli

    global _armed, _migrating
    captured = io.StringIO()
    sys.stdout = captured  # the JSON; progress and Alembic's log go to stderr, the file
    _migrating = True
    try:
        code = cli.main(["--no-color", "migrate", "--json", *(["--to", job.to] if job.to else [])])
    finally:
        _armed = False  # migrate has reported: a signal from here on changes nothing
        sys.stdout = sys.__stdout__
        print(captured.getvalue(), file=sys.stderr)
    document = _last_json(captured.getvalue())
    if "error" in document or not document:
        error = document.get("error") or f"migrate exited {code} without a report"
        now = re.search(r"the database is now at ([^;]+?)(?:[.;]|$)", error)
        if error == "interrupted":
            name = _signal_name()
            error = (
                f"interrupted by {name} outside a revision (none was half-applied). "
                "Fix: see where it is with `neon-migrate fleet status`"
            )
        return _failed(error, document.get("exit_code", code or 1), to=now[1] if now else None)
    applied = document.get("applied") or []
    to = document.get("now") or revision_text(job.wanted)
    result = {
        "outcome": "applied" if applied else "at-head",
        "to": to,
        "applied": [step["revision"] for step in applied],
    }
    failing = [
        f"verify {item['name']}: {item['detail']}"
        for item in document.get("verify", [])
        if not item.get("ok")
    ]
    if failing:
        return result | _failed("; ".join(failing), code or 1)
    return result


def _last_json(text: str) -> dict[str, Any]:
    """The last JSON document on stdout (a revision may print lines of its own before)."""
    lines = text.splitlines()
    for start in range(len(lines) - 1, -1, -1):
        if lines[start] == "{":
            try:
                found = json.loads("\n".join(lines[start:]))
            except ValueError:
                continue
            return found if isinstance(found, dict) else {}
    return {}
