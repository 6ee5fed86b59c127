"""What revisions written the way large projects write them do to a run, on a real server:
they set their own timeouts, commit their own transaction, build indexes concurrently,
print `%` in data, depend on the models' naming convention, and sometimes fail half-way.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import psycopg
import pytest
from alembic import command
from alembic.config import Config
from alembic.util import CommandError
from helpers import (
    CLI,
    ROOT,
    WAITING_FOR_OUR_LOCK,
    add_revision,
    alembic,
    cli,
    ends_within,
    psql,
    rows,
    verify_line,
)
from sqlalchemy import create_engine, text
from sqlalchemy.pool import NullPool

from neon_migrate.connection.engines import reset_engines
from neon_migrate.migrate.lock import LOCK_KEY
from neon_migrate.twin.lifecycle import keep_out_of_git

HEAD = "f096d6eff8ee"


def stamp(url: str) -> list[str]:
    return [r[0] for r in rows(url, "SELECT version_num FROM alembic_version")]


def test_a_revision_that_sets_timeouts_does_not_change_later_ones(project, db_url):
    """A session-level SET in one revision; the next starts with the harness's timeouts,
    and a SET LOCAL binds only its own revision."""
    add_revision(project, "long", HEAD, "SET lock_timeout = '1min'",
                 "SET statement_timeout = '30min'",
                 "CREATE TABLE seen (rev text, lock text, stmt text)")  # fmt: skip
    record = ("INSERT INTO seen VALUES ('{rev}', current_setting('lock_timeout'), "
              "current_setting('statement_timeout'))")  # fmt: skip
    add_revision(project, "next", "long", record.format(rev="next"))
    add_revision(project, "own", "next", "SET LOCAL lock_timeout = '7s'", record.format(rev="own"))
    add_revision(project, "after", "own", record.format(rev="after"))
    result = cli("migrate", env=project["env"])
    assert result.returncode == 0, result.stdout
    assert rows(db_url, "SELECT * FROM seen ORDER BY rev") == [
        ("after", "5s", "10min"),
        ("next", "5s", "10min"),
        ("own", "7s", "10min"),
    ]


def test_the_last_revision_committing_itself_keeps_its_stamp(project, db_url):
    """op.get_bind().commit() mid-revision, as the last revision of the run: the stamp
    Alembic writes after it must be committed too."""
    add_revision(project, "selfcommit", HEAD, source=(
        "    op.execute('CREATE TABLE big (id int, v text)')\n"
        "    op.get_bind().commit()\n"
        "    op.execute('CREATE INDEX ix_big_v ON big (v)')"))  # fmt: skip
    result = cli("migrate", env=project["env"])
    assert result.returncode == 0, result.stdout
    assert "applied 2 revision(s)" in result.stdout
    assert "the database is now at selfcommit (read back)" in result.stdout
    assert "verify: direct   ok" in result.stdout, result.stdout
    assert stamp(db_url) == ["selfcommit"]
    again = cli("migrate", env=project["env"])
    assert again.returncode == 0 and "already at head (selfcommit)" in again.stdout


def test_a_failure_after_a_commit_says_so_and_where_the_database_is(project, db_url):
    add_revision(project, "r2", HEAD, "CREATE TABLE things (id int, v text)")
    add_revision(project, "r3", "r2", source=(
        "    with op.get_context().autocommit_block():\n"
        "        op.execute('CREATE INDEX CONCURRENTLY ix_things_v ON things (v)')\n"
        "    op.execute('SELECT no_such_function()')"))  # fmt: skip
    result = cli("migrate", env=project["env"])
    assert result.returncode == 1
    last = result.stdout.strip().splitlines()[-1]
    assert last.startswith(
        "error: revision r3 (r3 test revision) failed during upgrade after "
        "committing part of its work (autocommit_block or commit())"
    ), last
    assert "the database is now at r2" in last
    assert "make the revision safe to run again" in last
    assert stamp(db_url) == ["r2"]


def test_a_failure_in_one_transaction_is_rolled_back_and_the_revision_named(project, db_url):
    add_revision(project, "r2", HEAD, "CREATE TABLE t2 (id int)", "SELECT no_such_function()")
    result = alembic("upgrade", "head", env=project["env"])
    assert result.returncode != 0
    assert "it was rolled back whole" in result.stdout
    assert f"the database is now at {HEAD}" in result.stdout
    assert rows(db_url, "SELECT to_regclass('t2')") == [(None,)]


def test_verify_flags_an_index_left_invalid(project, db_url):
    """A concurrent unique build that fails on duplicates leaves an INVALID index."""
    assert cli("migrate", env=project["env"]).returncode == 0
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("INSERT INTO account (email, display_name) VALUES ('a@x', 'a'), ('b@x', 'a')")
        with pytest.raises(psycopg.errors.UniqueViolation):
            conn.execute("CREATE UNIQUE INDEX CONCURRENTLY ix_dup ON account (display_name)")
    result = cli("verify", env=project["env"])
    assert result.returncode == 1
    line = verify_line(result.stdout, "direct")
    assert "FAIL" in line and "INVALID indexes: ix_dup" in line
    assert "DROP INDEX CONCURRENTLY" in line
    assert "INVALID" not in verify_line(result.stdout, "pooled")


def test_offline_sql_stores_the_same_data_as_an_online_run(project, db_url, pg_server):
    """`%` in op.execute came out doubled offline; `::` and an escaped `\\:word` too."""
    add_revision(project, "data", HEAD, source=(
        "    op.execute('CREATE TABLE note (id int, body text)')\n"
        "    op.execute(\"INSERT INTO note VALUES (1, 'Save 100% now'), (2, 'x'::text || '%%')\")\n"
        "    op.execute(\"INSERT INTO note VALUES (3, 'tag \\\\:label stays')\")"))  # fmt: skip
    env = dict(project["env"])
    env.pop("DATABASE_URL")
    offline = alembic("upgrade", "head", "--sql", env=env)
    assert offline.returncode == 0, offline.stdout
    applied = psql(db_url, offline.stdout)
    assert applied.returncode == 0, applied.stderr
    online_url = pg_server.url("online_data")
    with psycopg.connect(pg_server.url("postgres"), autocommit=True) as admin:
        admin.execute("DROP DATABASE IF EXISTS online_data")
        admin.execute("CREATE DATABASE online_data")
    try:
        online = alembic("upgrade", "head", env=dict(project["env"], DATABASE_URL=online_url))
        assert online.returncode == 0, online.stdout
        query = "SELECT * FROM note ORDER BY id"
        assert rows(db_url, query) == rows(online_url, query) == [
            (1, "Save 100% now"), (2, "x%%"), (3, "tag :label stays")]  # fmt: skip
    finally:
        with psycopg.connect(pg_server.url("postgres"), autocommit=True) as admin:
            admin.execute("DROP DATABASE IF EXISTS online_data WITH (FORCE)")


CONVENTION_REVISION = (
    "    import sqlalchemy as sa\n"
    "    op.create_table('priced', sa.Column('id', sa.Integer, primary_key=True),\n"
    "                    sa.Column('amount', sa.Integer), sa.CheckConstraint('amount >= 0'))"
)


def test_real_run_and_rehearsal_send_the_same_ddl(project):
    """The models' naming convention requires named check constraints; a real run, the
    check's rehearsal and the offline SQL all load it, so all three refuse the same way."""
    add_revision(project, "priced", HEAD, source=CONVENTION_REVISION)
    refusal = "requires that constraint is explicitly named"
    real = cli("migrate", env=project["env"])
    assert real.returncode == 1 and refusal in real.stdout, real.stdout
    check = subprocess.run(
        [*CLI, "check", "--json"],
        env=project["env"], capture_output=True, text=True, timeout=120)  # fmt: skip
    assert check.returncode == 1, check.stdout
    assert refusal in check.stdout
    env = dict(project["env"])
    env.pop("DATABASE_URL")
    offline = alembic("upgrade", "head", "--sql", env=env)
    assert refusal in offline.stdout


def test_unnamed_foreign_key_gets_the_convention_name_online_and_offline(project, db_url):
    add_revision(project, "fk", HEAD, source=(
        "    op.execute('CREATE TABLE tag (id int PRIMARY KEY, project_id int)')\n"
        "    op.create_foreign_key(None, 'tag', 'project', ['project_id'], ['id'])"))  # fmt: skip
    assert cli("migrate", env=project["env"]).returncode == 0
    names = rows(db_url, "SELECT conname FROM pg_constraint WHERE conrelid = 'tag'::regclass "
                         "AND contype = 'f'")  # fmt: skip
    assert names == [("fk_tag_project_id_project",)]
    env = dict(project["env"])
    env.pop("DATABASE_URL")
    assert "fk_tag_project_id_project" in alembic("upgrade", "head", "--sql", env=env).stdout


def test_twin_state_is_ignored_by_git_wherever_it_lives(tmp_path):
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    twin = tmp_path / ".local15"
    keep_out_of_git(twin / "pg")
    (twin / "pg" / "server.json").write_text("{}")
    (tmp_path / "mine.txt").write_text("the user's file beside it stays visible")
    status = subprocess.run(["git", "status", "--porcelain", "--untracked-files=all"],
                            cwd=tmp_path, capture_output=True, text=True, check=True)  # fmt: skip
    assert status.stdout == "?? mine.txt\n"


# --- what a review found at the edges -----------------------------------------------------------
def waiting_run(args: list[str], env: dict, db_url: str) -> subprocess.Popen:
    """Start a run and return once it polls for the migration lock another session holds."""
    run = subprocess.Popen([sys.executable, "-m", *args], env=env, text=True,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT)  # fmt: skip
    deadline = time.monotonic() + 30
    while rows(db_url, WAITING_FOR_OUR_LOCK)[0][0] == 0:
        if time.monotonic() > deadline or run.poll() is not None:
            run.kill()
            pytest.fail(f"the run never waited for the lock: {run.communicate()[0]}")
        time.sleep(0.05)
    return run


def test_a_waiter_whose_session_is_terminated_ends_in_one_line(project, db_url):
    """Neon ends sessions ('terminating connection due to administrator command'); a waiter
    polling for the lock then says so, without a traceback."""
    with psycopg.connect(db_url, autocommit=True) as holder:
        holder.execute("SELECT pg_advisory_lock(%s)", (LOCK_KEY,))
        run = waiting_run(["alembic", "upgrade", "head"], project["env"], db_url)
        holder.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                       "WHERE application_name = 'neon-migrate'")  # fmt: skip
        output = run.communicate(timeout=30)[0]
    assert run.returncode != 0
    assert "Traceback" not in output, output
    last = output.strip().splitlines()[-1]  # the driver's words differ with and without TLS
    assert last.startswith("FAILED: the connection to the database was lost:"), last
    assert "the database is now at no revision (empty). Fix: check the network" in last, last


def test_a_callers_connection_gets_its_timeouts_back_when_the_lock_stays_busy(harness_env, db_url):
    engine = create_engine(db_url.replace("postgresql://", "postgresql+psycopg2://"),
                           poolclass=NullPool)  # fmt: skip
    config = Config(str(ROOT / "alembic.ini"))
    with psycopg.connect(db_url, autocommit=True) as holder, engine.connect() as conn:
        holder.execute("SELECT pg_advisory_lock(%s)", (LOCK_KEY,))
        os.environ["MIGRATION_LOCK_WAIT"] = "0.3"
        reset_engines()
        config.attributes["connection"] = conn
        try:
            with pytest.raises(CommandError, match="held by pid"):
                command.upgrade(config, "head")
        finally:
            del os.environ["MIGRATION_LOCK_WAIT"]
            reset_engines()
        assert conn.execute(text("SHOW lock_timeout")).scalar() == "0"
        assert conn.execute(text("SHOW statement_timeout")).scalar() == "0"


def test_the_check_does_not_rehearse_while_a_migration_runs(project, db_url):
    """Waiting inside its transaction would deadlock the running migration's concurrent
    index builds, then rehearse what that migration had already applied."""
    add_revision(project, "r2", HEAD, "CREATE TABLE t2 (id int)")
    with psycopg.connect(db_url, autocommit=True) as holder:
        holder.execute("SELECT pg_advisory_lock(%s)", (LOCK_KEY,))
        started = time.monotonic()
        result = subprocess.run([*CLI, "check", "--json"],
                                env=project["env"], capture_output=True, text=True,
                                timeout=120)  # fmt: skip
        took = time.monotonic() - started
    report = json.loads(result.stdout)
    rehearsal = next(c for c in report["checks"] if c["id"] == "rehearsal")
    assert result.returncode == 1 and rehearsal["status"] == "fail"
    assert rehearsal["message"].startswith("a migration is running now (the migration lock is "
                                           "held by pid")  # fmt: skip
    ends_within(took, 30, "the check, which must not wait for the running migration")


def test_a_first_revision_failing_on_an_empty_database_says_so(project, db_url):
    for path in (project["root"] / "migrations" / "versions").glob("*.py"):
        path.unlink()
    first = add_revision(project, "first", "-", "CREATE TABLE a (id int)",
                         "SELECT no_such_function()")  # fmt: skip
    first.write_text(first.read_text().replace('down_revision = "-"', "down_revision = None"))
    result = alembic("upgrade", "head", env=project["env"])
    assert result.returncode != 0
    assert "the database is now at no revision (empty)" in result.stdout, result.stdout


def test_a_revision_that_fails_offline_for_another_reason_is_a_bug_not_online_only(project):
    add_revision(project, "typo", HEAD, source="    op.add_colunm('account', None)")
    env = dict(project["env"])
    env.pop("DATABASE_URL")
    offline = subprocess.run([sys.executable, "-m", "alembic", "upgrade", "head", "--sql"],
                             env=env, capture_output=True, text=True, timeout=60)  # fmt: skip
    assert offline.returncode == 1
    assert offline.stderr.startswith(
        "FAILED: revision typo (typo test revision) fails when rendered as SQL: AttributeError"
    )
    assert "only run online" not in offline.stderr
    result = subprocess.run([*CLI, "check", "--json"],
                            env=project["env"], capture_output=True, text=True,
                            timeout=120)  # fmt: skip
    plan = next(c for c in json.loads(result.stdout)["checks"] if c["id"] == "plan")
    assert result.returncode == 1 and plan["status"] == "fail", plan


def test_an_interrupt_after_a_midway_commit_says_what_stayed(project, db_url):
    add_revision(project, "g1", HEAD, source=(
        "    op.execute('CREATE TABLE g1t (id int)')\n"
        "    op.get_bind().commit()\n"
        "    op.execute('SELECT pg_sleep(20)')"))  # fmt: skip
    run = subprocess.Popen([*CLI, "migrate"], env=project["env"],
                           text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)  # fmt: skip
    deadline = time.monotonic() + 30
    sleeping = (
        "SELECT count(*) FROM pg_stat_activity "
        "WHERE pid <> pg_backend_pid() AND query LIKE '%SELECT pg_sleep(20)%'"
    )
    while rows(db_url, sleeping)[0][0] == 0:
        assert time.monotonic() < deadline and run.poll() is None, "the revision never ran"
        time.sleep(0.05)
    run.send_signal(signal.SIGTERM)
    output = run.communicate(timeout=30)[0]
    last = output.strip().splitlines()[-1]
    assert run.returncode == 128 + signal.SIGTERM
    assert "interrupted by SIGTERM during revision g1 (g1 test revision), after it had " \
           "committed part of its work" in last, last  # fmt: skip
    assert f"the database is now at {HEAD}" in last, last
    assert rows(db_url, "SELECT to_regclass('g1t')") == [("g1t",)]


def test_app_timeouts_set_by_a_revision_survive_the_pooler(project, twin_env, pooled_url):
    """SET on connect leaks through a transaction pooler; a role default does not, and it
    reaches every new server session PgBouncer opens for the app."""
    env = dict(project["env"], DATABASE_URL=twin_env["DATABASE_URL"],
               DATABASE_URL_DIRECT=twin_env["DATABASE_URL_DIRECT"])  # fmt: skip
    add_revision(project, "timeouts", HEAD, source=(
        "    from neon_migrate.migrate.app_timeouts import set_app_timeouts\n"
        "    set_app_timeouts(statement_timeout='30s',\n"
        "                     idle_in_transaction_session_timeout='1min')"))  # fmt: skip
    result = cli("migrate", env=env)
    assert result.returncode == 0, result.stdout
    assert "app timeouts: statement 30s, idle in transaction 1min" in verify_line(
        result.stdout, "pooled"
    )
    with psycopg.connect(pooled_url) as conn:
        assert conn.execute("SHOW statement_timeout").fetchone()[0] == "30s"
        assert conn.execute("SHOW idle_in_transaction_session_timeout").fetchone()[0] == "1min"
    with psycopg.connect(twin_env["DATABASE_URL_DIRECT"]) as conn:  # the role's own sessions
        assert conn.execute("SHOW statement_timeout").fetchone()[0] == "30s"
    offline_env = dict(env)
    offline_env.pop("DATABASE_URL")
    offline_env.pop("DATABASE_URL_DIRECT")
    sql = alembic("upgrade", "head", "--sql", env=offline_env).stdout
    assert "ALTER ROLE %I IN DATABASE %I SET statement_timeout = %L" in sql


def test_a_revision_with_its_own_longer_statement_timeout_is_not_cut_short(project):
    """The client stops timing a revision that sets its own statement_timeout."""
    add_revision(project, "long", HEAD, "SET statement_timeout = 0", "SELECT pg_sleep(5)")
    env = dict(project["env"], MIGRATION_STATEMENT_TIMEOUT="2", DB_CONNECT_TIMEOUT="1")
    result = cli("migrate", env=env)
    assert result.returncode == 0, result.stdout


def test_a_slow_commit_is_not_taken_for_a_dead_link(project, db_url):
    """A deferred constraint trigger runs at COMMIT; the revision's limit covers it."""
    add_revision(project, "slow", HEAD, source=(
        "    op.execute('CREATE TABLE t (id int)')\n"
        "    op.execute(\"CREATE FUNCTION nap() RETURNS trigger LANGUAGE plpgsql AS "
        "$$ BEGIN PERFORM pg_sleep(4); RETURN NULL; END $$\")\n"
        "    op.execute('CREATE CONSTRAINT TRIGGER late AFTER INSERT ON t DEFERRABLE "
        "INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION nap()')\n"
        "    op.execute('INSERT INTO t VALUES (1)')"))  # fmt: skip
    env = dict(project["env"], MIGRATION_STATEMENT_TIMEOUT="6", MIGRATION_LOCK_TIMEOUT="1",
               DB_CONNECT_TIMEOUT="1")  # fmt: skip
    result = cli("migrate", env=env)
    assert result.returncode == 0, result.stdout
    assert stamp(db_url) == ["slow"]


def test_copy_in_a_revision_runs_inside_blocking(project, db_url):
    """psycopg2 refuses COPY under a wait callback; neon_migrate.connection.waiting.blocking()
    allows it, and without it the message says so."""
    copy = (
        "    import io\n"
        "    op.execute('CREATE TABLE c (id int)')\n"
        "    cursor = op.get_bind().connection.dbapi_connection.cursor()\n"
        "    cursor.copy_expert('COPY c FROM STDIN', io.StringIO('1\\n2\\n'))\n"
    )
    add_revision(project, "c1", HEAD, source=copy)
    bare = cli("migrate", env=project["env"])
    assert bare.returncode == 1
    assert (
        "wrap the COPY (or large object) code in `with neon_migrate.connection.waiting.blocking():`"
        in (bare.stdout)
    )
    path = project["root"] / "migrations" / "versions" / "c1.py"
    blocked = (
        "    from neon_migrate.connection.waiting import blocking\n"
        "    with blocking():\n        cursor"
    )
    path.write_text(path.read_text().replace("    cursor.copy_expert(", blocked + ".copy_expert("))
    result = cli("migrate", env=project["env"])
    assert result.returncode == 0, result.stdout
    assert rows(db_url, "SELECT count(*) FROM c") == [(2,)]


def test_python_work_longer_than_the_idle_timeout_is_named_as_such(project):
    add_revision(project, "idle", HEAD, source=(
        "    import time\n"
        "    op.execute('CREATE TABLE i (id int)')\n"
        "    time.sleep(4)\n"
        "    op.execute('INSERT INTO i VALUES (1)')"))  # fmt: skip
    result = cli("migrate", env=dict(project["env"], MIGRATION_IDLE_TIMEOUT="2"))
    assert result.returncode == 1, result.stdout
    last = result.stdout.strip().splitlines()[-1]
    assert "sat idle in its session longer than MIGRATION_IDLE_TIMEOUT" in last, last
    assert "Fix: raise MIGRATION_IDLE_TIMEOUT" in last


def test_models_slow_to_import_never_hold_a_migration_session_open(project, db_url):
    """Importing the models (here 3 s) happens before the migration session is opened:
    a MIGRATION_IDLE_TIMEOUT shorter than that import does not end the run."""
    root = project["root"]
    (root / "slow_models.py").write_text(
        "import time\n\ntime.sleep(3)\nfrom app.models import metadata  # noqa: E402,F401\n"
    )
    ini = root / "alembic.ini"
    ini.write_text(ini.read_text().replace("app.models:metadata", "slow_models:metadata"))
    add_revision(project, "afterslow", HEAD, "CREATE TABLE after_slow (id int)")
    result = cli("migrate", env=dict(project["env"], MIGRATION_IDLE_TIMEOUT="1"))
    assert result.returncode == 0, result.stdout
    assert "the database is now at afterslow (read back)" in result.stdout
    assert stamp(db_url) == ["afterslow"]


def test_calling_alembic_in_process_leaves_the_processs_waits_alone(harness_env):
    """An app running alembic.config.main() at start-up keeps blocking psycopg2 waits."""
    import psycopg2.extensions
    from alembic.config import main

    assert psycopg2.extensions.get_wait_callback() is None
    main(argv=["-c", str(ROOT / "alembic.ini"), "upgrade", "head"])
    assert psycopg2.extensions.get_wait_callback() is None


@pytest.mark.parametrize("call", ["sys.exit(0)", "os._exit(0)"])
def test_a_revision_that_exits_the_process_is_a_failure_not_a_success(project, db_url, call):
    """Before: `migrate` exited 0, printed nothing, and the revision was not applied: a
    deploy would have shipped code ahead of its schema."""
    source = f"    import os, sys\n    op.execute('CREATE TABLE quits (id int)')\n    {call}\n"
    add_revision(project, "quits", HEAD, source=source)
    add_revision(project, "later", "quits", "CREATE TABLE later (id int)")
    dry = cli("migrate", "--dry-run", env=project["env"])  # renders it: the plan says the path
    assert dry.returncode == 0 and "would apply" in dry.stdout and "quits" in dry.stdout, dry.stdout
    result = cli("migrate", env=project["env"])
    assert result.returncode == 1, result.stdout
    assert f"revision quits (quits test revision) called {call}" in result.stdout
    assert f"the database is now at {HEAD}" in result.stdout
    assert stamp(db_url) == [HEAD]
    assert rows(db_url, "SELECT to_regclass('quits') IS NULL") == [(True,)]
    plain = alembic("upgrade", "head", env=project["env"])
    assert plain.returncode != 0 and f"called {call}" in plain.stdout, plain.stdout
    sql = cli("sql", env=project["env"])
    assert sql.returncode == 1 and f"called {call}" in sql.stdout, sql.stdout[-500:]


def test_a_forked_child_in_a_revision_still_ends_with_os_exit(project, db_url):
    """multiprocessing ends its forked children with os._exit: that must still work."""
    source = (
        "    import multiprocessing\n"
        "    child = multiprocessing.get_context('fork').Process(target=print)\n"
        "    child.start(); child.join()\n"
        "    op.execute(f'CREATE TABLE child_{child.exitcode} (id int)')\n"
    )
    add_revision(project, "forks", HEAD, source=source)
    result = cli("migrate", env=project["env"])
    assert result.returncode == 0, result.stdout
    assert rows(db_url, "SELECT to_regclass('child_0') IS NOT NULL") == [(True,)]


def test_a_rerun_over_an_index_left_invalid_is_not_stamped(project, db_url):
    """The README's advice after a failed concurrent build is IF NOT EXISTS; on the rerun
    that clause skipped the INVALID index and the revision was stamped over it (plain
    `alembic upgrade head` exit 0, `status` exit 0 and `ok`)."""
    assert cli("migrate", env=project["env"]).returncode == 0
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("INSERT INTO account (email, display_name) VALUES ('a@x', 'a'), ('b@x', 'a')")
    add_revision(project, "uniq", HEAD, source=(
        "    with op.get_context().autocommit_block():\n"
        "        op.create_index('ix_Uniq_name', 'account', ['display_name'], unique=True,\n"
        "                        postgresql_concurrently=True, if_not_exists=True)\n"))  # fmt: skip
    first = cli("migrate", env=project["env"])
    assert first.returncode == 1 and "could not create unique index" in first.stdout
    rerun = alembic("upgrade", "head", env=project["env"])  # the duplicates are still there
    assert rerun.returncode != 0, rerun.stdout
    assert 'an index it creates is INVALID: "ix_Uniq_name"' in rerun.stdout, rerun.stdout
    assert 'DROP INDEX CONCURRENTLY "ix_Uniq_name";' in rerun.stdout
    assert stamp(db_url) == [HEAD]
    status = cli("status", env=project["env"])
    assert status.returncode == 1, status.stdout
    assert 'problem: index "ix_Uniq_name" is INVALID' in status.stdout
    report = json.loads(cli("status", "--json", env=project["env"]).stdout)
    assert report["invalid_indexes"] == ['"ix_Uniq_name"']
    with psycopg.connect(db_url, autocommit=True) as conn:  # the fix the message gives
        conn.execute("DELETE FROM account WHERE email = 'b@x'")
        conn.execute('DROP INDEX CONCURRENTLY "ix_Uniq_name"')
    assert cli("migrate", env=project["env"]).returncode == 0
    assert stamp(db_url) == ["uniq"]
    assert cli("status", env=project["env"]).returncode == 0


def test_a_plain_rerun_over_an_index_left_invalid_is_not_stamped_either(project, db_url):
    """The revision edited after the failed concurrent build to a plain CREATE INDEX IF NOT
    EXISTS (one message on the fast path, where nothing looked at what it created)."""
    assert cli("migrate", env=project["env"]).returncode == 0
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("INSERT INTO account (email, display_name) VALUES ('a@x', 'a'), ('b@x', 'a')")
    add_revision(project, "uniq", HEAD, source=(
        "    with op.get_context().autocommit_block():\n"
        "        op.create_index('ix_uniq_name', 'account', ['display_name'], unique=True,\n"
        "                        postgresql_concurrently=True, if_not_exists=True)\n"))  # fmt: skip
    assert cli("migrate", env=project["env"]).returncode == 1
    add_revision(project, "uniq", HEAD, source=(
        "    op.create_index('ix_uniq_name', 'account', ['display_name'], unique=True,\n"
        "                    if_not_exists=True)\n"))  # fmt: skip
    rerun = alembic("upgrade", "head", env=project["env"])
    assert rerun.returncode != 0, rerun.stdout
    assert "an index it creates is INVALID: ix_uniq_name" in rerun.stdout, rerun.stdout
    assert stamp(db_url) == [HEAD]


def test_index_names_a_revision_creates():
    from neon_migrate.migrate.invalid_indexes import created_names

    sql = (
        'CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS "Ix_A" ON t (a); '
        "create index ix_b on s.t using gin (b); CREATE INDEX ON t (c); "
        "CREATE INDEX CONCURRENTLY ON t (d)"
    )
    assert created_names(sql) == ["Ix_A", "ix_b"]


def test_sigterm_during_a_concurrent_build_reads_the_revision_back(project, db_url):
    """Before: on a live link the message said `now at unknown: the connection was lost`
    instead of reading the revision back."""
    assert cli("migrate", env=project["env"]).returncode == 0
    build = "CREATE INDEX CONCURRENTLY ix_waits ON account (email)"
    add_revision(
        project,
        "ix",
        HEAD,
        source=(f"    with op.get_context().autocommit_block():\n        op.execute({build!r})\n"),
    )
    with psycopg.connect(db_url) as old_snapshot:  # the build waits for this snapshot to end
        old_snapshot.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        old_snapshot.execute("SELECT count(*) FROM project").fetchone()
        run = subprocess.Popen([*CLI, "migrate"], env=project["env"], text=True,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT)  # fmt: skip
        building = ("SELECT count(*) FROM pg_stat_activity "
                    "WHERE query LIKE 'CREATE INDEX CONCURRENTLY ix_waits%'")  # fmt: skip
        deadline = time.monotonic() + 30
        while rows(db_url, building)[0][0] == 0:
            assert time.monotonic() < deadline and run.poll() is None, "the build never ran"
            time.sleep(0.05)
        time.sleep(0.5)
        run.send_signal(signal.SIGTERM)
        output = run.communicate(timeout=30)[0]
    last = output.strip().splitlines()[-1]
    assert run.returncode == 128 + signal.SIGTERM, output
    assert "interrupted by SIGTERM during revision ix (ix test revision)" in last, last
    assert f"the database is now at {HEAD}" in last and "unknown" not in last, last
