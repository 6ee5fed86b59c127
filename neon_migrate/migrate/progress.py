"""One line per revision as it is applied or reverted, and the failing revision named.

Alembic has no hook that runs before a revision, so each revision module's upgrade and
downgrade are wrapped: the wrapper times the call, reports it, and turns an exception
into a MigrationError that names the revision. The wrapped call still runs inside
Alembic's per-migration transaction, so a failure rolls that revision back whole.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import re
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from alembic import context
from alembic.script import Script, ScriptDirectory
from sqlalchemy.exc import PendingRollbackError

from neon_migrate.connection.connect import driver_message
from neon_migrate.connection.waiting import IDLE_ENDED, lost_connection
from neon_migrate.errors import HarnessError, MigrationError
from neon_migrate.migrate import invalid_indexes, offline, revision_session

log = logging.getLogger("neon_migrate.migrate")

APPLIED = "applied_revisions"  # config.attributes key: [(direction, revision, ms), ...]
# (revision, label, direction) of the revision whose transaction is not committed yet: a deferred
# constraint can still fail it at COMMIT, or the link can break there, after its
# function returned, and the error must name it.
UNCOMMITTED = "uncommitted_revision"
# The database's revision as read back at the end of a run, failed or not: "r2", "r2, r7",
# "no revision (empty)" or "unknown: ...".
REVISION_NOW = "database_revision_read_back"


class RevisionFailed(MigrationError):
    """A revision raised. Keeps the original for the retry logic."""

    def __init__(
        self,
        revision: str,
        label: str,
        direction: str,
        original: BaseException,
        commits_midway: bool,
    ) -> None:
        self.revision, self.label, self.original = revision, label, original
        # It had ended Alembic's transaction (autocommit_block, commit()) before failing:
        # that part of its work is committed, and running it again may not be safe.
        self.commits_midway = commits_midway
        if isinstance(original, SystemExit):  # the revision tried to end the process
            how = getattr(original, "how", "sys.exit")
            cause = (
                f"{label} called {how}({original.code!r}) during {direction}: the run was "
                "stopped there and the revision is not applied"
                + ("; it had committed part of its work first" if commits_midway else "")
            )
            fix = "raise an exception instead of exiting (a deploy must not see a failed "
            fix += "revision end with its exit code), then run again"
        elif isinstance(original, invalid_indexes.IndexesLeftInvalid):
            cause = (
                f"{label} ran, but an index it creates is INVALID: {original} (a concurrent "
                "build that failed earlier, which IF NOT EXISTS skipped); it is not stamped"
            )
            drops = " ".join(f"DROP INDEX CONCURRENTLY {n};" for n in original.names)
            fix = f"{drops} then migrate again: the revision builds it anew"
        elif any(m in str(original).lower() for m in IDLE_ENDED):  # the server, on purpose
            cause = (
                f"{label} sat idle in its session longer than MIGRATION_IDLE_TIMEOUT (Python "
                "work between its statements?), and the server ended it: "
                + driver_message(original)
            )
            fix = "raise MIGRATION_IDLE_TIMEOUT for this run, or move that work out of it"
        elif "asynchronous callback" in str(original):  # COPY, large objects
            cause = f"{label} failed during {direction}: {driver_message(original)}"
            fix = (
                "wrap the COPY (or large object) code in "
                "`with neon_migrate.connection.waiting.blocking():`; "
                "the harness's bounded waits do not allow it"
            )
        elif lost_connection(original):  # the network failed, not the revision
            self.exit_code = 3
            cause = (
                f"{label} lost its connection during {direction}: {driver_message(original)}"
                + ("; it had committed part of its work first" if commits_midway else "")
            )
            fix = (
                "check the network and the database (`make verify`), then run again; what "
                "it had not committed is rolled back by the server when it notices"
            )
        elif commits_midway:
            cause = (
                f"{label} failed during {direction} after committing part of its work "
                f"(autocommit_block or commit()): {driver_message(original)}"
            )
            fix = (
                "make the revision safe to run again (IF NOT EXISTS, IF EXISTS), drop any "
                "INVALID index it left (`make verify` lists them), then migrate again"
            )
        elif extension := missing_extension(original):  # the server's, not the revision's
            cause = (
                f'{label} failed during {direction}: extension "{extension}" is not '
                "installed on this PostgreSQL server (Neon offers it)"
            )
            fix = (
                f"locally, set LOCAL_PG_BIN_DIR to a PostgreSQL bin folder that has {extension} "
                "(or unset it: the bundled 17 has it after `python -m neon_migrate.twin.provision`)"
                "; elsewhere, install it on that server"
            )
        elif direction == "offline rendering":  # not one that only runs online: a bug
            cause = f"{label} fails when rendered as SQL: {type(original).__name__}: " + (
                driver_message(original)
            )
            fix = "fix the revision: this error would stop an online run too"
        else:
            cause = f"{label} failed during {direction}: {driver_message(original)}"
            fix = "fix the revision and run again; it was rolled back whole"
        super().__init__(cause, fix)


def missing_extension(exc: BaseException) -> str | None:
    """The extension a CREATE EXTENSION found missing on the server, or None. PostgreSQL 15+
    says `extension "x" is not available`; older ones name the control file."""
    text = str(exc)
    found = re.search(r'extension "([^"]+)" is not available', text) or re.search(
        r'could not open extension control file "[^"]*/([^/"]+)\.control"', text
    )
    return found.group(1) if found else None


PROGRESS_FD = "NEON_MIGRATE_PROGRESS_FD"  # set by a parent that watches the run


def announce(event: str, revision: str, direction: str, ms: float | None = None) -> None:
    """A JSON line per revision start and end on the descriptor a watching parent (the
    check's branch rehearsal) passed: log lines are the project's to format, not a channel."""
    fd = os.environ.get(PROGRESS_FD)
    if fd:
        line = {"event": event, "revision": revision, "direction": direction, "ms": ms}
        os.write(int(fd), (json.dumps(line) + "\n").encode())


class ProcessExit(SystemExit):
    """os._exit() called by a revision, turned into an exception the run can report."""

    how = "os._exit"


@contextmanager
def no_process_exit() -> Iterator[None]:
    """While a revision runs, os._exit() in this process raises instead of ending it.

    os._exit(0) skips every handler: the run would end with exit 0, the revision rolled
    back by the server, and a deploy would ship code ahead of its schema. A forked child
    (multiprocessing) still ends with the real os._exit."""
    real, pid = os._exit, os.getpid()

    def refuse(code: int) -> None:
        if os.getpid() != pid:
            real(code)
        raise ProcessExit(code)

    os._exit = refuse
    try:
        yield
    finally:
        os._exit = real


def _hidden_cause(exc: BaseException) -> BaseException:
    """The error to report: when a link breaks inside autocommit_block, Alembic's cleanup
    on the way out meets SQLAlchemy's PendingRollbackError ("Can't reconnect until invalid
    transaction is rolled back"), which would hide the lost link it was raised during."""
    seen = set()
    while isinstance(exc, PendingRollbackError) and exc.__context__ is not None:
        if id(exc) in seen:
            break
        seen.add(id(exc))
        exc = exc.__context__
    return exc


def _timed(script: Script, direction: str, fn: Callable[..., None]) -> Callable[..., None]:
    @functools.wraps(fn)
    def run(*args, **kwargs) -> None:
        attributes = context.config.attributes
        label = f"revision {script.revision} ({' '.join((script.doc or '').split())})"
        if context.is_offline_mode():
            try:
                with no_process_exit():
                    offline.render(context.get_context().impl, attributes, script,
                                   functools.partial(fn, *args, **kwargs))  # fmt: skip
            except (Exception, SystemExit) as exc:
                raise RevisionFailed(script.revision, label, "offline rendering", exc,
                                     commits_midway=False) from exc  # fmt: skip
            return
        attributes.pop(UNCOMMITTED, None)  # the previous revision's COMMIT went through
        session = attributes.get(revision_session.ATTRIBUTE)
        if session is not None:
            session.start()
        starting = "applying " if direction == "upgrade" else "reverting"
        log.info("%s %s  %s ...", starting, script.revision, script.doc)  # a slow one shows
        announce("start", script.revision, direction)
        started = time.perf_counter()
        conn = context.get_bind()

        def done(how: str = "") -> None:
            ms = (time.perf_counter() - started) * 1000
            verb = "applied " if direction == "upgrade" else "reverted"
            log.info("%s %s  %s  (%.0f ms%s)", verb, script.revision, script.doc, ms, how)
            announce("end", script.revision, direction, ms)
            attributes.setdefault(APPLIED, []).append((direction, script.revision, ms))

        try:
            with no_process_exit(), invalid_indexes.watch(conn) as created:
                held = direction == "upgrade" and session is not None
                held = held and session.send_as_one(script, label, lambda: done(", one message"))
                if not held:
                    fn(*args, **kwargs)
            invalid_indexes.raise_if_invalid(conn, created)  # before its stamp: none then
        except HarnessError:
            raise
        except KeyboardInterrupt as exc:  # a signal: say which revision it stopped, and how
            exc.label = label  # type: ignore[attr-defined]
            midway = session.finish(ok=False) if session is not None else False
            exc.commits_midway = midway  # type: ignore[attr-defined]
            raise
        except (Exception, SystemExit) as exc:  # sys.exit(0) must not read as success
            midway = session.finish(ok=False) if session is not None else False
            cause = _hidden_cause(exc)
            raise RevisionFailed(script.revision, label, direction, cause, midway) from exc
        if session is not None:
            session.finish(ok=True)
        if not held:  # a held one is done once its message has committed (round_trips.py)
            done()
        attributes[UNCOMMITTED] = (script.revision, label, direction)

    run.harness_wrapped = True  # type: ignore[attr-defined]
    return run


def report_each_revision(script_directory: ScriptDirectory) -> None:
    for script in script_directory.walk_revisions():
        for direction in ("upgrade", "downgrade"):
            fn = getattr(script.module, direction, None)
            if fn is not None and not getattr(fn, "harness_wrapped", False):
                setattr(script.module, direction, _timed(script, direction, fn))
