"""Alembic environment. Offline: SQL out, no database. Online: the harness's safe path.

Every way of running Alembic goes through here (`alembic`, `neon-migrate`, `flask db`,
`alembic.command` from a program, pytest-alembic), so each gets the same safety as
`make migrate`: direct endpoint only, retried connect, advisory lock,
lock/statement timeouts, one transaction per migration, a revision that hits a busy
table retried, Ctrl-C / SIGTERM cancelling the running statement. The logic is in
neon_migrate.migrate.
"""

from logging.config import fileConfig

from alembic import context

from neon_migrate.migrate import offline
from neon_migrate.migrate.contention import run_with_lock_retries
from neon_migrate.migrate.environment import (
    configure_options,
    emit_timeouts_in_each_transaction,
    migration_connection,
    one_line_errors,
)
from neon_migrate.migrate.log import show_progress
from neon_migrate.migrate.progress import report_each_revision
from neon_migrate.settings import get_settings

config = context.config
if (
    config.config_file_name
    and config.file_config.has_section("loggers")
    and config.attributes.get("configure_logger", True)
):
    fileConfig(config.config_file_name, disable_existing_loggers=False)
show_progress()


def run_offline() -> None:
    """SQL for a DBA or a review: literal values, no URL, no credentials needed."""
    context.configure(
        dialect_name="postgresql",
        literal_binds=True,
        dialect_opts={"paramstyle": "named"},  # '100%' stays '100%', as online
        **configure_options(config),
    )
    emit_timeouts_in_each_transaction(context.get_context())
    report_each_revision(context.script)
    with context.begin_transaction():
        context.run_migrations()
    offline.raise_if_any(config.attributes)  # revisions that only run online, named


def run_online() -> None:
    report_each_revision(context.script)
    options = configure_options(config)  # imports the models: before a session is opened
    with migration_connection(config) as connection:
        context.configure(connection=connection, **options)
        run_with_lock_retries(connection, get_settings(), run_migrations)


def run_migrations() -> None:
    with context.begin_transaction():
        context.run_migrations()


with one_line_errors(config):
    if context.is_offline_mode():
        run_offline()
    else:
        run_online()
