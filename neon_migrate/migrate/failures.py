"""What a failed run says: our errors, stray driver errors and signals, as Alembic's one
line `FAILED: ...`, with where the database was left (read back) and, for a link lost
at a COMMIT or a signal that came as it was sent, whether that revision committed.
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Iterator
from contextlib import contextmanager

from alembic.util import CommandError
from sqlalchemy.exc import DBAPIError

from neon_migrate.connection.connect import driver_message
from neon_migrate.connection.waiting import lost_connection, unconfirmed_cancel
from neon_migrate.errors import ConfigError, HarnessError, MigrationError, UnreachableError
from neon_migrate.migrate.heads import unknown_revision_error
from neon_migrate.migrate.progress import REVISION_NOW, UNCOMMITTED
from neon_migrate.migrate.script_errors import script_problem
from neon_migrate.migrate.signals import RunInterrupted, received


@contextmanager
def one_line_errors(config) -> Iterator[None]:
    """Turn our errors, stray driver errors and signals into Alembic's one-line `FAILED:`.

    A front-end reports a CommandError its own way (`alembic` prints `FAILED:` on stdout).
    When the offline SQL itself goes to stdout (`alembic upgrade --sql > file`, `flask db
    upgrade --sql`: no `output_buffer` given), that line would land in the SQL, so the
    line goes to stderr here and the exit code alone tells the shell. A caller that
    wants the exception hands Alembic an `output_buffer`.
    """
    from alembic import context

    attributes = config.attributes
    try:
        yield
    except BrokenPipeError:
        # The reader of the SQL (`make sql | head`) went away: stop quietly, as Unix tools do.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        raise SystemExit(1) from None
    except (Exception, KeyboardInterrupt) as err:
        error = _as_harness_error(err, attributes)
        if error is None:
            raise  # a bug: let its traceback show
        if context.is_offline_mode() and config.output_buffer is None:
            print(f"FAILED: {error}", file=sys.stderr, flush=True)
            raise SystemExit(error.exit_code) from None
        raise CommandError(str(error)) from error


def _running_revision(err: BaseException | None) -> tuple[str | None, bool]:
    """The revision a signal stopped, and whether it had committed part of its work: on
    the error, or on one it interrupted the handling of (the handler's exception can land
    while the cancelled statement's is being handled)."""
    seen = set()
    while err is not None and id(err) not in seen:
        seen.add(id(err))
        if getattr(err, "label", None):
            return err.label, getattr(err, "commits_midway", False)
        err = err.__cause__ or err.__context__
    return None, False


def _as_harness_error(err: BaseException, attributes: dict) -> HarnessError | None:
    error = _classify(err, attributes)
    now = attributes.get(REVISION_NOW)
    if error is not None and now and not isinstance(error, ConfigError):
        error = error.amended(f"the database is now at {now}")
    return error


def _classify(err: BaseException, attributes: dict) -> HarnessError | None:
    signum = received() or (signal.SIGINT if isinstance(err, KeyboardInterrupt) else None)
    if signum:
        running, midway = _running_revision(err)
        return RunInterrupted(signum, running, midway, unconfirmed_cancel(err),
                              _commit_of(running, attributes))  # fmt: skip
    if isinstance(err, HarnessError):
        return err
    missing = getattr(err.__cause__, "argument", None)  # Alembic's ResolutionError
    now = (attributes.get(REVISION_NOW) or "").split(", ")
    if isinstance(err, CommandError) and isinstance(missing, str) and missing in now:
        return unknown_revision_error([missing])  # the database's, not one the user named
    if not isinstance(err, DBAPIError):
        return script_problem(err)  # None: a bug, whose traceback shows
    at_commit = attributes.get(UNCOMMITTED)
    if at_commit and lost_connection(err):  # the COMMIT was sent: did it happen?
        return _ambiguous_commit(*at_commit, driver_message(err), attributes.get(REVISION_NOW))
    if at_commit:  # e.g. a deferred foreign key, checked only at COMMIT
        return MigrationError(
            f"{at_commit[1]} failed at commit: {driver_message(err)}",
            "fix the revision and run again",
        )
    if lost_connection(err):
        return UnreachableError(
            f"the connection to the database was lost: {driver_message(err)}",
            "check the network and the database (`make verify`), then run again",
        )
    return MigrationError(f"database error: {driver_message(err)}")


def _commit_of(running: str | None, attributes: dict) -> str:
    """For a signal during a revision whose statements had all gone (its COMMIT sent with
    them, or next): "committed" or "unknown" as the stamp read back says; else ""."""
    at_commit = attributes.get(UNCOMMITTED)
    if running is None or not at_commit or at_commit[1] != running:
        return ""
    committed = _committed(at_commit[0], at_commit[2], attributes.get(REVISION_NOW))
    return "unknown" if committed is None else "committed" if committed else ""


def _committed(revision: str, direction: str, now: str | None) -> bool | None:
    """Whether a revision's COMMIT happened, from the stamp read back (None: unread): an
    upgrade's stamp names it, a downgrade's no more."""
    if now is None or now.startswith("unknown"):
        return None
    stamped = revision in now.split(", ")
    return stamped if direction == "upgrade" else not stamped


def _ambiguous_commit(
    revision: str, label: str, direction: str, why: str, now: str | None
) -> HarnessError:
    """The link broke at a revision's COMMIT; the stamp, read back on a new connection,
    tells whether it was committed (an upgrade's stamp names it, a downgrade's no more)."""
    head = f"the connection was lost at the COMMIT of {label} ({why})"
    committed = _committed(revision, direction, now)
    if committed is None:
        return UnreachableError(
            f"{head}; whether it was committed is unknown: the database could not be reached",
            "run `make verify` when it answers: at this revision it was committed, before it "
            "it was not; then migrate again",
        )
    return UnreachableError(
        f"{head}; it was {'committed' if committed else 'NOT committed'} (read back)",
        "check the network, then run again to apply what is left",
    )
