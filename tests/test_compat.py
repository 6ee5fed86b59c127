"""Each library internal that neon_migrate/compat.py relies on, exercised on the installed
versions: CI runs this on the lowest supported Alembic and SQLAlchemy and on the newest,
so an upgrade that moves one fails here, by name."""

from __future__ import annotations

import ctypes
import inspect
import io
from pathlib import Path

import alembic.command
import alembic.script.base
import alembic.script.revision
import pytest
from alembic import op
from alembic.autogenerate.api import RevisionContext
from alembic.config import Config
from alembic.operations import Operations
from alembic.runtime.environment import EnvironmentContext
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Column, Integer, MetaData, Table, create_engine, create_mock_engine, event
from sqlalchemy.pool import QueuePool

from neon_migrate import compat


@pytest.mark.parametrize("dont_mutate", [True, False])
def test_the_commands_own_arguments_say_whether_it_changes_anything(tmp_path, dont_mutate):
    (tmp_path / "versions").mkdir()
    (tmp_path / "script.py.mako").write_text("")
    config = Config()
    config.set_main_option("script_location", str(tmp_path))
    script = ScriptDirectory.from_config(config)
    with EnvironmentContext(config, script, dont_mutate=dont_mutate):
        assert compat.changes_nothing() is dont_mutate
    assert compat.changes_nothing() is False  # no command running: the safe side


def test_revision_and_check_still_keep_what_tells_them_apart():
    assert "self.command_args" in inspect.getsource(RevisionContext.__init__)
    check = inspect.getsource(alembic.command.check)
    assert "revision_context" in check and "def retrieve_migrations" in check
    ctx = MigrationContext.configure(dialect_name="postgresql", opts={"revision_context": None})
    assert "revision_context" in ctx.opts


def test_some_graph_building_frame_is_still_where_alembic_reads_revision_files():
    modules = (alembic.script.base.ScriptDirectory, alembic.script.base.Script,
               alembic.script.revision.RevisionMap)  # fmt: skip
    found = {name for name in compat.GRAPH_BUILDING for m in modules if hasattr(m, name)}
    assert found, "none of the frame names is in alembic.script any more"


def test_a_commit_through_the_offline_connection_fails_with_the_text_matched():
    engine = create_mock_engine("postgresql://", lambda *_a, **_k: None)
    with pytest.raises(AttributeError) as failed:
        engine.connect().commit()  # what op.get_bind() is offline
    assert compat.MOCK_CONNECTION_ENDS_TRANSACTION.search(str(failed.value)), failed.value


def _offline(buffer: io.StringIO) -> MigrationContext:
    return MigrationContext.configure(
        dialect_name="postgresql", opts={"as_sql": True, "output_buffer": buffer}
    )


def test_offline_sql_goes_where_output_to_says_then_back():
    run, aside = io.StringIO(), io.StringIO()
    impl = _offline(run).impl
    with compat.output_to(impl, aside):
        impl.static_output("SELECT 'aside'")
    impl.static_output("SELECT 'run'")
    assert "aside" in aside.getvalue() and "aside" not in run.getvalue()
    assert "'run'" in run.getvalue()


def test_something_written_after_each_begin():
    buffer = io.StringIO()
    impl = _offline(buffer).impl
    compat.after_each_begin(impl, lambda: impl.static_output("SET LOCAL lock_timeout = '5s';"))
    impl.emit_begin()
    lines = [line for line in buffer.getvalue().splitlines() if line.strip()]
    assert lines == ["BEGIN;", "SET LOCAL lock_timeout = '5s';"]


def test_a_pools_overflow_limit_is_read():
    pool = QueuePool(lambda: None, pool_size=2, max_overflow=3)
    assert compat.pool_max_overflow(pool) == 3
    assert compat.pool_max_overflow(QueuePool(lambda: None, max_overflow=-1)) == -1


def test_a_statement_kept_back_reports_one_row(tmp_path):
    """SQLite stands in for the engine mechanics only: no statement reaches a database."""
    engine = create_engine(f"sqlite:///{tmp_path / 'db'}")
    table = Table("t", MetaData(), Column("id", Integer))
    table.metadata.create_all(engine)

    @event.listens_for(engine, "do_execute")
    def keep(cursor, statement, parameters, context):
        if statement.startswith("UPDATE"):
            compat.count_as_one_row(context)
            return True  # not executed
        return None

    with engine.begin() as conn:
        result = conn.execute(table.update().values(id=1))  # no row: would match 0
        assert result.rowcount == 1


def test_op_is_bound_back_to_the_run_after_a_render():
    run = MigrationContext.configure(dialect_name="postgresql", opts={"as_sql": True,
                                     "output_buffer": io.StringIO()})  # fmt: skip
    render = _offline(io.StringIO())
    with Operations.context(run):
        with compat.operations_for(render) as operations:
            assert op.get_context() is render and operations.migration_context is render
        assert op.get_context() is run


def test_psycopg2s_extension_is_a_library_that_loads():
    path = compat.psycopg2_extension_file()
    assert Path(path).is_file()
    assert ctypes.CDLL(path) is not None
