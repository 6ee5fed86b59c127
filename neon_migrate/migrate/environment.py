"""Everything migrations/env.py needs, so that env.py itself reads in a minute.

The safety of a plain `alembic upgrade head` lives here: the direct endpoint only,
retried connect, advisory lock, timeouts, one transaction per migration, and errors
that reach the user as one line.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from alembic.runtime.migration import MigrationContext
from sqlalchemy import text
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import SQLAlchemyError

from neon_migrate import compat, project
from neon_migrate.connection import urls, waiting
from neon_migrate.connection.connect import connect
from neon_migrate.connection.endpoints import get_endpoints, local_provider
from neon_migrate.connection.engines import get_migration_engine
from neon_migrate.connection.targets import SESSION_TOKEN
from neon_migrate.connection.timeouts import lock_timeout, statement_timeout
from neon_migrate.connection.waiting import (
    answered_after_signal,
)
from neon_migrate.errors import ConfigError
from neon_migrate.migrate import flask_app, revision_session
from neon_migrate.migrate.failures import one_line_errors  # noqa: F401 - env.py imports it here
from neon_migrate.migrate.lock import lock_key, migration_lock
from neon_migrate.migrate.progress import APPLIED, REVISION_NOW, UNCOMMITTED
from neon_migrate.migrate.revision_session import RevisionSession, keep_stamp
from neon_migrate.migrate.signals import received, stop_on_signals
from neon_migrate.settings import get_settings
from neon_migrate.twin import local_twin

log = logging.getLogger("neon_migrate.migrate")


def target_metadata(config):
    """The models' MetaData, named by `target_metadata = module:attribute` in alembic.ini's
    [alembic] section or in [tool.neon-migrate] of pyproject.toml (`app.models:metadata`,
    `app.models:SQLModel.metadata`).

    Loaded for every command, as stock Alembic's env.py does: its naming convention names
    the constraints and indexes that `op` creates, so a run without it (and a rehearsal or
    offline render with it) would send different DDL for the same revision.
    """
    spec = project.option(config, "target_metadata")
    if not spec:
        return None
    module_name, _, attribute = spec.partition(":")
    try:
        found = importlib.import_module(module_name.strip())
        for name in (attribute.strip() or "metadata").split("."):
            found = getattr(found, name)
        return found
    except (ImportError, AttributeError) as exc:
        raise ConfigError(
            f"target_metadata = {spec} in {project.where(config)} cannot be loaded: "
            f"{type(exc).__name__}: {exc}",
            project.unloadable_module_fix(config, exc)
            or "name the models' MetaData as module:attribute (e.g. app.models:SQLModel.metadata)",
        ) from None


def _skip_empty_autogenerate(ctx: MigrationContext, revision: Any, directives: list) -> None:
    if compat.writes_a_revision_file(ctx) and directives[0].upgrade_ops.is_empty():
        directives[:] = []
        log.info("no changes between the models and the database: no revision written")


def configure_options(config) -> dict[str, Any]:
    """Options shared by online and offline `context.configure()`.

    Inside a Flask app (`flask db ...`) the models are the app's Flask-SQLAlchemy `db`
    and the app's Flask-Migrate options (compare_type, render_as_batch, ...) apply, as
    with Flask-Migrate's own env.py; the harness's safety hooks stay on either way.
    """
    from neon_migrate.migrate.autogenerate import autogenerate_options

    app = flask_app.migrate_state()
    if reads_only():  # `current`: no DDL, no comparison: no models to load
        metadata = None
    else:
        metadata = flask_app.metadata(app) if app is not None else target_metadata(config)
    ours = {
        "target_metadata": metadata,
        "transaction_per_migration": True,
        "compare_type": True,
        "compare_server_default": True,
        "process_revision_directives": _skip_empty_autogenerate,
        "on_version_apply": [keep_stamp],
        **project.version_table(config).configure(),  # version_table, version_table_schema
        **autogenerate_options(),  # SQLModel's types rendered as sa.*, our own table ignored
    }
    return flask_app.merged(ours, app.configure_args if app is not None else None)


def refuse_pooled(given: Connection | Engine) -> None:
    """A caller's engine or connection for migrations must not be Neon's pooled endpoint.

    Our own migration engine needs no such check: resolve() refuses a pooled direct URL,
    and any PgBouncer rejects the startup options that engine sends.
    """
    engine = given.engine if isinstance(given, Connection) else given
    url = engine.url.render_as_string(hide_password=True)
    if urls.is_pooled(url):
        raise ConfigError(
            f"migrations cannot run through Neon's pooled endpoint {urls.host_of(url)} "
            "(PgBouncer in transaction mode breaks the session advisory lock and SET)",
            "hand env.py an engine or connection on the direct endpoint (the same host "
            "without -pooler)",
        )


def reads_only() -> bool:
    """The command leaves the database alone, as Alembic itself tells env.py (`current`,
    whichever front-end runs it): it neither queues behind a running migration nor loads
    the models. Everything else takes the lock, comparisons with the models included
    (`revision --autogenerate`, `check`): a schema half-way through a migration is no
    baseline. Never read from the `alembic` command line's own objects, which Flask-Migrate
    and API callers do not build."""
    return compat.changes_nothing()


@contextmanager
def migration_connection(config) -> Iterator[Connection]:
    """The connection to migrate on, holding the migration lock, timeouts set.

    `config.attributes["connection"]` (pytest-alembic, or an application running its
    migrations itself) may hold a Connection, used as is and left open, or an Engine,
    connected to like ours.
    """
    settings = get_settings()
    for stale in (REVISION_NOW, APPLIED, UNCOMMITTED, revision_session.ATTRIBUTE):  # reused
        config.attributes.pop(stale, None)
    given: Connection | Engine | None = config.attributes.get("connection")
    if given is not None:
        refuse_pooled(given)
    with contextlib.ExitStack() as bounds:
        # A command line (`alembic`, `flask db`: both hand Alembic a cmd_opts namespace)
        # may start the twin; an app calling alembic.command at start-up keeps its waits.
        if config.cmd_opts is not None and not waiting.installed():
            bounds.enter_context(waiting.bounded(settings.db_connect_timeout))
            bounds.enter_context(local_provider(local_twin))
        app = flask_app.migrate_state()
        if app is not None and given is None:  # `flask db upgrade` migrates the app's db
            flask_app.refuse_another_database(app, get_endpoints())
        yield from _migration_connection(config, settings, given)


def _migration_connection(config, settings, given) -> Iterator[Connection]:
    if isinstance(given, Connection):
        conn = given
    else:
        variable = "the given engine" if given else get_endpoints().direct_variable
        conn = connect(
            given or get_migration_engine(),
            retry_seconds=settings.db_connect_retry_seconds,
            variable=variable,
            migrations=True,
        )
    if conn is not given:  # our own session: a silent link is noticed within seconds
        waiting.probe_with(conn.connection.dbapi_connection, liveness(conn))
    try:
        with stop_on_signals(canceller(conn)):
            if not reads_only():
                token = SESSION_TOKEN if given is None else None  # our engine's sessions
                key = lock_key(project.version_table(config))
                with migration_lock(conn, settings, token, key) as scope:
                    session = RevisionSession(conn, settings, scope)
                    config.attributes[revision_session.ATTRIBUTE] = session
                    try:
                        yield conn
                    finally:
                        session.close()
                    if conn is not given and config.attributes.get(APPLIED):
                        now = database_revision(conn, table=project.version_table(config))
                        config.attributes[REVISION_NOW] = now
                        log.info("the database is now at %s (read back)", now)
            else:  # our engine's timeouts came in the startup packet
                yield conn
    except BaseException as exc:  # a signal too: every run that ends says where the db is
        if conn is not given:  # after a signal, reconnect only if the server still answers
            reconnect = received() is None or answered_after_signal(exc)
            table = project.version_table(config)
            config.attributes[REVISION_NOW] = database_revision(conn, reconnect, table)
        raise
    finally:
        if conn is not given:
            conn.close()


def canceller(conn: Connection) -> Callable[[], None]:
    """Cancel `conn`'s running statement from another thread, through a new session.

    psycopg2's own cancel() holds the GIL while it connects: on a link that has gone
    silent it froze the whole process, the signal handler included. A new session that
    runs pg_cancel_backend waits the way every connect does (bounded, GIL released).
    """
    pid = conn.connection.dbapi_connection.info.backend_pid
    engine = conn.engine

    def cancel() -> None:
        with engine.connect() as other:
            other.execute(text("SELECT pg_cancel_backend(:pid)"), {"pid": pid})

    return cancel


_SESSION_STATE = text(
    "SELECT state, extract(epoch FROM clock_timestamp() - state_change) "
    "FROM pg_stat_activity WHERE pid = :pid"
)


def liveness(conn: Connection) -> Callable[[], str | None]:
    """A probe for waiting.probe_with: asks, through a new session, whether the server is
    still running `conn`'s statement. Called only after seconds without an answer, when
    the statement has long arrived: a session that is gone, or idle, will never answer.
    An idle one is ended there and then, so its locks go now, not at the idle timeout."""
    pid = conn.connection.dbapi_connection.info.backend_pid
    engine = conn.engine

    def probe() -> str | None:
        with engine.connect() as other:
            row = other.execute(_SESSION_STATE, {"pid": pid}).first()
            if row is None:
                return (
                    f"the server has ended the migration session (pid {pid}) while the client "
                    "still waited for its answer: the link to it is gone"
                )
            state, idle = row
            if state == "active" or idle is None or idle < 1:
                return None  # running our statement, or its answer is on the way
            other.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
            other.commit()
        return (
            f"the server is not running the statement the client waits for (its session, "
            f"pid {pid}, is {state}): the link lost it or its answer; the session was ended "
            "on the server, and its locks with it"
        )

    return probe


def database_revision(
    conn: Connection, reconnect: bool = True, table: project.VersionTable | None = None
) -> str:
    """The version table as it is committed, read after a failure (the lock is released);
    on a new connection if the link broke and `reconnect` allows."""
    table = table or project.VersionTable()

    def read(on: Connection) -> str:
        if on.in_transaction():
            on.rollback()
        exists = on.execute(text("SELECT to_regclass(:t)"), {"t": table.sql}).scalar()
        query = text(f"SELECT version_num FROM {table.sql} ORDER BY 1")
        rows = on.execute(query).scalars().all() if exists else []
        on.rollback()
        return ", ".join(rows) or "no revision (empty)"

    if not conn.invalidated:
        try:
            return read(conn)
        except SQLAlchemyError:  # never let the read-back hide the failure it reports on
            pass
    if reconnect:  # a new session: the old one may be closed, or stuck in an invalid state
        try:
            with conn.engine.connect() as fresh:
                return read(fresh)
        except SQLAlchemyError:
            pass
    return "unknown: the connection was lost (run `make verify` to see it)"


def emit_timeouts_in_each_transaction(ctx: MigrationContext) -> None:
    """Offline SQL: put SET LOCAL timeouts right after every BEGIN the script emits."""
    settings = get_settings()
    impl = ctx.impl

    def timeouts() -> None:
        impl.static_output(f"SET LOCAL lock_timeout = '{lock_timeout(settings)}';")
        impl.static_output(f"SET LOCAL statement_timeout = '{statement_timeout(settings)}';")

    compat.after_each_begin(impl, timeouts)
