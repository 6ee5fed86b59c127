"""Every place the harness relies on a library's internals: Alembic, SQLAlchemy, psycopg2.

Each access is tagged PRIVATE with its reason, and tests/test_compat.py exercises each
against the installed versions; CI runs the suite on the lowest supported Alembic and
SQLAlchemy and on the newest, so an upgrade that moves one breaks here, in one small
file, and nowhere else. Nothing else in the package reaches into a library's privates.
Neutral ground: both halves (the app's connection/observe and the tooling) import it, so
it imports Alembic only inside the functions that need it.

Alembic: env.py must behave the same whichever front-end runs Alembic (the `alembic`
command, `neon-migrate`, Flask-Migrate's `flask db`, `alembic.command.*` from Python,
pytest-alembic). So it decides what a command does from what every front-end hands
Alembic's EnvironmentContext, never from the `alembic` command line's own argument
object, which the others do not build.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any


def _environment_options() -> Mapping[str, Any]:
    """The keyword arguments the running command gave EnvironmentContext."""
    from alembic import context

    # PRIVATE: `alembic.context` proxies the EnvironmentContext's methods only; the object
    # itself, which holds the command's arguments, is the module's `_proxy`.
    environment = getattr(context, "_proxy", None)
    # PRIVATE: EnvironmentContext keeps those arguments in `context_opts`; the public
    # getters (is_offline_mode, get_revision_argument) read from it, but none exposes
    # `dont_mutate`.
    return getattr(environment, "context_opts", None) or {}


def changes_nothing() -> bool:
    """True when Alembic itself says the command leaves the database alone.

    `alembic.command.current` (hence `alembic current`, `flask db current`) passes
    `dont_mutate=True`, as pytest-alembic does for a run with no target revision. Every
    other command may write (upgrade, downgrade, stamp, ensure_version) or compares the
    database with the models (revision --autogenerate, check), and a command this module
    does not know is taken to write: the safe side.
    """
    return bool(_environment_options().get("dont_mutate", False))


def writes_a_revision_file(migration_context: Any) -> bool:
    """True inside `revision --autogenerate` (`flask db migrate`): the one command whose
    empty result must not be written. False for `alembic check` (`flask db check`), which
    reads that same result afterwards, and for a plain `revision` run through env.py
    (`revision_environment = true`), whose empty revision the user asked for."""
    # PRIVATE: `opts` holds what EnvironmentContext was given; `revision_context` is the
    # RevisionContext that `alembic.command.revision` and `check` build, and its
    # `command_args` the one place the autogenerate flag is kept for every front-end.
    opts = getattr(migration_context, "opts", None) or {}
    command_args = getattr(opts.get("revision_context"), "command_args", None) or {}
    if not command_args.get("autogenerate", False):
        return False
    # PRIVATE: `check` builds the same command_args as `revision --autogenerate`; only the
    # migration function it hands EnvironmentContext (`fn`, defined inside
    # alembic.command.check) tells the two apart.
    fn = opts.get("fn")
    return not getattr(fn, "__qualname__", "").startswith("check.")


# --- Alembic: offline rendering -------------------------------------------------------------
# PRIVATE: the frames where Alembic reads the revision files into its graph (functions of
# alembic.script); a revision file that does not load fails inside one of them.
GRAPH_BUILDING = frozenset({"_load_revisions", "_revision_map", "_from_path", "_from_filename"})

# PRIVATE: offline, `op.get_bind()` is SQLAlchemy's MockConnection (a private class), and a
# revision that commits through it fails with this text; nothing typed says so.
MOCK_CONNECTION_ENDS_TRANSACTION = re.compile(
    r"'MockConnection' object has no attribute '(?:commit|rollback|begin)'"
)


@contextmanager
def output_to(impl: Any, buffer: Any) -> Iterator[None]:
    """Offline SQL that Alembic's impl writes goes to `buffer` for a while.

    PRIVATE: `DefaultImpl.output_buffer` is where offline SQL is written; the public
    option sets it once per run, and a revision that cannot render must be dropped whole.
    """
    real = impl.output_buffer
    impl.output_buffer = buffer
    try:
        yield
    finally:
        impl.output_buffer = real


def after_each_begin(impl: Any, emit: Callable[[], None]) -> None:
    """Offline: call `emit` right after every BEGIN Alembic writes.

    PRIVATE: `DefaultImpl.emit_begin` writes that BEGIN; Alembic has no hook for the SQL
    that opens each transaction, and SET LOCAL must follow it to apply there.
    """
    begin = impl.emit_begin

    def begin_then_emit() -> None:
        begin()
        emit()

    impl.emit_begin = begin_then_emit


# --- SQLAlchemy ---------------------------------------------------------------------------
def pool_max_overflow(pool: Any) -> int:
    """QueuePool's max_overflow as configured (-1: unlimited).

    PRIVATE: QueuePool has getters for size, checked-out and overflow, none for its limit.
    """
    return pool._max_overflow


class _CountedCursor:
    """A cursor whose statement was kept, not sent: it reports the one row the kept
    statement is checked to match on the server (round_trips._CHECKED)."""

    rowcount = 1

    def __init__(self, cursor: Any) -> None:
        self._cursor = cursor

    def __getattr__(self, name: str) -> Any:
        return getattr(self._cursor, name)


def count_as_one_row(context: Any) -> None:
    """Make SQLAlchemy report rowcount 1 for a statement that a `do_execute` hook kept
    back (Alembic refuses a stamp whose UPDATE matched another number of rows).

    PRIVATE: SQLAlchemy has no public way to set a result's rowcount. 2.1 reads the
    execution context's `_rowcount` first; 2.0 reads `context.cursor.rowcount` only, so
    the cursor is wrapped (results, description and close still reach the real one).
    """
    context._rowcount = 1
    context.cursor = _CountedCursor(context.cursor)


@contextmanager
def operations_for(ctx: Any) -> Iterator[Any]:
    """`alembic.op` bound to `ctx` for a while, then to what it was bound to before.

    PRIVATE: `Operations.context()` unbinds `op` on exit instead of restoring the
    previous binding, so rendering a revision during a run (fast_path.py) would leave the
    run's own `op` unbound. The binding is the module's `_proxy`, re-installed with the
    proxy's `_install_proxy()`.
    """
    from alembic import op
    from alembic.operations import Operations

    previous = getattr(op, "_proxy", None)
    try:
        with Operations.context(ctx) as operations:
            yield operations
    finally:
        if previous is not None:
            previous._install_proxy()


# --- psycopg2 -----------------------------------------------------------------------------
def psycopg2_extension_file() -> str:
    """The file of psycopg2's C extension, whose library search finds the very libpq that
    psycopg2 connects with.

    PRIVATE: `psycopg2._psycopg` is the extension module; psycopg2 names no public path.
    """
    import psycopg2._psycopg

    return psycopg2._psycopg.__file__
