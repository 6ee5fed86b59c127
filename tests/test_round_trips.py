"""Round trips per revision, counted as the client's flushes through the real proxy.

At 20 ms to Neon every flush is a latency: a one-statement revision must cost one on the
fast path (BEGIN, its statement, stamp, history row and COMMIT in one message) and two on
the normal path (BEGIN with its statement; stamp, history row and COMMIT together), not
psycopg2's five.
"""

from __future__ import annotations

import psycopg
import pytest
from alembic import command
from alembic.config import Config
from helpers import add_revision, alembic, rows
from proxy import FaultProxy
from sqlalchemy import create_engine, text
from sqlalchemy.pool import NullPool

HEAD = "f096d6eff8ee"  # the example project's head


def _through(proxy: FaultProxy, env: dict, db_url: str) -> dict:
    url = db_url.replace(f":{proxy.target[1]}/", f":{proxy.port}/")
    return dict(env, DATABASE_URL=url)


@pytest.mark.parametrize("fast, flushes", [("true", 1), ("false", 2)], ids=["fast", "normal"])
def test_flushes_per_one_statement_revision(project, db_url, pg_server, fast, flushes):
    proxy = FaultProxy(pg_server.port)
    try:
        env = dict(_through(proxy, project["env"], db_url), MIGRATION_FAST_PATH=fast)
        first = alembic("upgrade", "head", env=env)  # the example chain, the history table
        assert first.returncode == 0, first.stdout
        down = HEAD
        for n in range(1, 11):
            add_revision(project, f"r{n}", down, f"CREATE TABLE t{n} (id int)")
            down = f"r{n}"
        one = alembic("upgrade", "r1", env=env)
        assert one.returncode == 0, one.stdout
        before = proxy.client_chunks
        one_more = alembic("upgrade", "r2", env=env)
        assert one_more.returncode == 0, one_more.stdout
        run_of_one = proxy.client_chunks - before
        before = proxy.client_chunks
        eight_more = alembic("upgrade", "r10", env=env)
        assert eight_more.returncode == 0, eight_more.stdout
        run_of_nine = proxy.client_chunks - before
    finally:
        proxy.close()
    extra = run_of_nine - run_of_one  # the same run, eight revisions more
    print(f"flushes per one-statement revision: {extra / 8:g}")
    # One chunk of slack: on a loaded machine the proxy can read one write in two pieces.
    assert extra <= flushes * 8 + 1, (run_of_one, run_of_nine)
    assert rows(db_url, "SELECT version_num FROM alembic_version") == [("r10",)]
    applied = rows(db_url, "SELECT revision FROM neon_migrate_history ORDER BY applied_at")
    assert [r for (r,) in applied][-10:] == [f"r{n}" for n in range(1, 11)]
    assert rows(db_url, "SELECT count(*) FROM pg_tables WHERE tablename ~ '^t[0-9]+$'") == [(10,)]


def test_a_failing_revision_leaves_the_session_usable_and_nothing_of_itself(project, db_url):
    add_revision(project, "r1", HEAD, "CREATE TABLE kept (id int)")
    add_revision(project, "r2", "r1", "CREATE TABLE lost (id int)", "SELECT 1/0")
    failed = alembic("upgrade", "head", env=project["env"])
    assert failed.returncode != 0
    assert "revision r2 (r2 test revision) failed during upgrade" in failed.stdout
    assert "division by zero" in failed.stdout
    assert "the database is now at r1" in failed.stdout, failed.stdout  # read back after ROLLBACK
    assert rows(db_url, "SELECT to_regclass('kept')::text, to_regclass('lost')::text") == [
        ("kept", None)
    ]


def test_a_stamp_that_matches_no_row_stops_the_commit(project, db_url):
    """Alembic checks that its stamp matched one row; the kept stamp checks it on the server."""
    add_revision(
        project,
        "r1",
        HEAD,
        source='    op.execute("CREATE TABLE t1 (id int)")\n'
        "    op.execute(\"UPDATE alembic_version SET version_num = 'elsewhere'\")",
    )
    assert alembic("upgrade", HEAD, env=project["env"]).returncode == 0
    failed = alembic("upgrade", "head", env=project["env"])
    assert failed.returncode != 0
    assert "the stamp matched 0 rows of the version table" in failed.stdout
    with psycopg.connect(db_url) as conn:
        assert conn.execute("SELECT to_regclass('t1')").fetchone() == (None,)
        assert conn.execute("SELECT version_num FROM alembic_version").fetchall() == [(HEAD,)]


def test_a_psycopg3_connection_given_by_the_caller_migrates_one_statement_at_a_time(
    project, db_url
):
    """psycopg 3 sends a statement with parameters as a prepared one, which cannot hold two
    statements: on its connections nothing is put in front of a statement."""
    add_revision(project, "r1", HEAD, "CREATE TABLE t1 (id int)")
    engine = create_engine(db_url.replace("postgresql://", "postgresql+psycopg://"),
                           poolclass=NullPool)  # fmt: skip
    config = Config(str(project["root"] / "alembic.ini"))
    with engine.connect() as conn:
        config.attributes["connection"] = conn
        command.upgrade(config, "head")
        assert conn.execute(text("SELECT version_num FROM alembic_version")).all() == [("r1",)]
    assert rows(db_url, "SELECT revision FROM neon_migrate_history ORDER BY applied_at") == [
        (HEAD,),
        ("r1",),
    ]


def test_a_history_row_that_fails_with_the_commit_names_a_midway_commit(project, db_url):
    """The row goes with the COMMIT: its failure still says what the revision had committed."""
    assert alembic("upgrade", HEAD, env=project["env"]).returncode == 0
    with psycopg.connect(db_url) as conn:
        conn.execute("DROP TABLE neon_migrate_history")
        conn.execute("CREATE TABLE neon_migrate_history (id int)")  # not ours: no such columns
    add_revision(project, "r1", HEAD, source=(
        "    op.execute('CREATE TABLE early (id int)')\n"
        "    op.get_bind().commit()\n"
        "    op.execute('CREATE TABLE late (id int)')"))  # fmt: skip
    failed = alembic("upgrade", "head", env=project["env"])
    assert failed.returncode != 0
    assert (
        "revision r1 ran, but its row in neon_migrate_history could not be written (column "
        '"revision" of relation "neon_migrate_history" does not exist), so its upgrade was '
        "rolled back except the part it had committed itself"
    ) in failed.stdout, failed.stdout
    assert rows(db_url, "SELECT to_regclass('early')::text, to_regclass('late')::text") == [
        ("early", None)
    ]
    assert rows(db_url, "SELECT version_num FROM alembic_version") == [(HEAD,)]
