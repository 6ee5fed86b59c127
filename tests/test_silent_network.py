"""Bounded and truthful when the network goes wrong: silent links, kills, a pooler in
disguise, a connection lost at COMMIT. A real TCP proxy (tests/proxy.py) sits between the
harness and a real PostgreSQL; every test asserts the bound, the exit code, the one line
and the server's state afterwards (no lock left, the stamp true).

The proxy cannot see inside TLS, so the proxied URLs use sslmode=disable.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import psycopg
import pytest
from helpers import CLI, add_revision, ends_within
from proxy import FaultProxy

from neon_migrate.migrate.lock import LOCK_KEY
from neon_migrate.twin.local import LocalServerInfo
from neon_migrate.twin.pooler import LocalPooler
from neon_migrate.twin.tls import ensure_certificates

HEAD = "f096d6eff8ee"
# Small limits so that every bound is seconds, with generous margins in the asserts.
LIMITS = {
    "DB_CONNECT_TIMEOUT": "2",
    "DB_CONNECT_RETRY_SECONDS": "0",
    "MIGRATION_STATEMENT_TIMEOUT": "3",
    "MIGRATION_IDLE_TIMEOUT": "3",
}
EXCLUSIVE_ON_ACCOUNT = """
    SELECT count(*) FROM pg_locks
    WHERE relation = 'account'::regclass AND mode = 'AccessExclusiveLock' AND granted
"""
ADVISORY = (
    f"SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND objid = {LOCK_KEY & 0xFFFFFFFF}"
)


@pytest.fixture
def proxy(pg_server):
    front = FaultProxy(pg_server.port)
    yield front
    front.close()


@pytest.fixture
def through(project, proxy, db_url) -> dict:
    """The project's environment, its URL through the proxy, in plain TCP."""
    url = db_url.replace(f":{proxy.target[1]}/", f":{proxy.port}/") + "?sslmode=disable"
    return dict(project["env"], DATABASE_URL=url, **LIMITS)


def one(url: str, query: str):
    with psycopg.connect(url) as conn:
        return conn.execute(query).fetchone()[0]


def until(url: str, query: str, value, seconds: float) -> float:
    """Seconds until `query` returns `value` on the server itself; fails past `seconds`."""
    started = time.monotonic()
    while one(url, query) != value:
        if time.monotonic() - started > seconds:
            pytest.fail(f"{query.split()[0:6]} never reached {value} within {seconds}s")
        time.sleep(0.1)
    return time.monotonic() - started


def timed(args: list[str], env: dict, timeout: float = 60):
    started = time.monotonic()
    result = subprocess.run([sys.executable, "-m", *args], env=env, capture_output=True,
                            text=True, timeout=timeout)  # fmt: skip
    return result, time.monotonic() - started


def last_line(result) -> str:
    output = result.stdout + result.stderr
    assert "Traceback" not in output, output
    return output.strip().splitlines()[-1]


@pytest.mark.parametrize(
    "command",
    [
        ["neon_migrate.cli", "migrate"],
        ["neon_migrate.cli", "verify"],
        ["neon_migrate.cli", "check"],
        ["alembic", "upgrade", "head"],
    ],
    ids=" ".join,
)
@pytest.mark.slow
def test_a_stall_at_connect_ends_within_the_connect_timeout(through, proxy, command, capsys):
    proxy.go_silent()
    result, took = timed(command, through)
    with capsys.disabled():
        print(f"\nstall at connect, {' '.join(command)}: ended in {took:.1f}s")
    ends_within(took, 15, "connecting (DB_CONNECT_TIMEOUT is 2s)")
    # unreachable, for the check too; plain alembic exits 255 on any failure
    assert result.returncode == (255 if command[0] == "alembic" else 3), result.stdout
    assert "no answer from the server for 2s" in result.stdout + result.stderr


def test_a_stall_mid_revision_ends_in_bounded_time_and_the_server_lets_go(
    through, proxy, project, db_url
):
    add_revision(project, "r2", HEAD, "ALTER TABLE account ADD COLUMN stalled int",
                 "SELECT 'stall-here'")  # fmt: skip
    proxy.go_silent(on=b"stall-here")
    # the client gives up first (3 s + 2 s), the server's idle timeout follows (8 s). The
    # normal path, statement by statement: on the fast path the statements travel with the
    # COMMIT, and a stall there is the lost-COMMIT case below.
    env = dict(through, MIGRATION_IDLE_TIMEOUT="8", MIGRATION_FAST_PATH="false")
    result, took = timed(["neon_migrate.cli", "migrate"], env)
    line = last_line(result)
    assert result.returncode == 3, line
    ends_within(took, 20, "statement limit 3s + 2s grace, reconnect 2s:")
    print(f"stall mid-revision: ended in {took:.1f}s")
    assert line.startswith("error: revision r2 (r2 test revision) lost its connection"), line
    assert "no answer from the server for 5s" in line and "Fix: check the network" in line
    # The server's session sat idle in its transaction, holding ACCESS EXCLUSIVE on
    # account; MIGRATION_IDLE_TIMEOUT (3 s) ends it.
    held = until(db_url, EXCLUSIVE_ON_ACCOUNT, 0, 15)
    print(f"stall mid-revision: server let go of the table {held:.1f}s after the run ended")
    assert held < 15
    assert until(db_url, ADVISORY, 0, 15) < 15
    assert one(db_url, "SELECT version_num FROM alembic_version") == HEAD


def test_sigterm_ends_a_run_stuck_on_a_silent_link(through, proxy, project, db_url):
    add_revision(project, "r2", HEAD, "ALTER TABLE account ADD COLUMN stalled int",
                 "SELECT 'stall-here'")  # fmt: skip
    env = dict(through, MIGRATION_STATEMENT_TIMEOUT="600")  # only the signal can end it
    proxy.go_silent(on=b"stall-here")
    run = subprocess.Popen([*CLI, "migrate"], env=env, text=True,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT)  # fmt: skip
    deadline = time.monotonic() + 30
    while not proxy.silent:
        assert time.monotonic() < deadline and run.poll() is None, run.stdout.read()
        time.sleep(0.05)
    time.sleep(0.5)
    sent = time.monotonic()
    run.send_signal(signal.SIGTERM)
    output = run.communicate(timeout=30)[0]
    took = time.monotonic() - sent
    assert run.returncode == 128 + signal.SIGTERM, output
    ends_within(took, 8, "exit after SIGTERM (the cancel grace is 3s)")
    print(f"SIGTERM on a silent link: exited in {took:.1f}s")
    last = output.strip().splitlines()[-1]
    assert "interrupted by SIGTERM during revision r2" in last, last
    assert "the server did not confirm the cancel" in last, last  # nothing claimed undone
    assert until(db_url, EXCLUSIVE_ON_ACCOUNT, 0, 15) < 15  # the server's idle timeout


def test_kill_9_mid_statement_releases_the_locks_within_seconds(project, db_url):
    """client_connection_check_interval: the server notices the vanished client while its
    statement still runs, instead of holding the locks until the statement ends."""
    add_revision(project, "r2", HEAD, "ALTER TABLE account ADD COLUMN doomed int",
                 "SELECT pg_sleep(60)")  # fmt: skip
    run = subprocess.Popen([*CLI, "migrate"], env=project["env"],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    sleeping = (
        "SELECT count(*) FROM pg_stat_activity WHERE query LIKE '%pg_sleep(60)%' "
        "AND pid <> pg_backend_pid()"
    )  # alone, or in its revision's one message
    until(db_url, sleeping, 1, 30)
    run.kill()
    run.wait(timeout=10)
    released = until(db_url, EXCLUSIVE_ON_ACCOUNT, 0, 20)
    assert released < 10, f"locks held {released:.1f}s after kill -9 (the check runs every 2s)"
    print(f"kill -9 mid-statement: locks released {released:.1f}s after")
    assert until(db_url, ADVISORY, 0, 10) < 10
    assert one(db_url, "SELECT version_num FROM alembic_version") == HEAD


def test_a_pooler_that_drops_startup_options_is_refused_before_anything_runs(
    pgbouncer, project, pg_server, postgresql, tmp_path
):
    """PgBouncer with ignore_startup_parameters = options passes as a direct endpoint: the
    session token read back with the lock catches it; nothing is locked or set there."""
    certs = ensure_certificates(tmp_path / "tls")
    info = LocalServerInfo(
        host=pg_server.host, port=pg_server.port, user=pg_server.user,
        password=pg_server.password, database=postgresql.info.dbname, data_dir=tmp_path,
        log_file=tmp_path / "log", version="", started=False, certificates=certs,
        tls=pg_server.tls,
    )  # fmt: skip
    pooler = LocalPooler(tmp_path / "bouncer", extra={"ignore_startup_parameters": "options"})
    port = pooler.start(info).port
    try:
        disguised = pg_server.url(postgresql.info.dbname, port=port) + "?sslmode=require"
        env = dict(project["env"], DATABASE_URL_DIRECT=disguised)
        result, _ = timed(["neon_migrate.cli", "migrate"], env)
        line = last_line(result)
        assert result.returncode == 2, line
        assert "did not apply the session's startup options" in line
        assert "ignore_startup_parameters = options" in line
        assert one(pg_server.url(postgresql.info.dbname), ADVISORY) == 0
        with psycopg.connect(disguised) as conn:  # no timeout of ours left on the pool
            assert conn.execute("SHOW lock_timeout").fetchone()[0] == "0"
        assert one(pg_server.url(postgresql.info.dbname),
                   "SELECT to_regclass('alembic_version')") is None  # fmt: skip
    finally:
        pooler.stop()


@pytest.mark.parametrize("fast", ["true", "false"], ids=["fast path", "normal path"])
def test_a_connection_lost_right_after_commit_is_reported_as_committed(
    through, proxy, project, db_url, fast
):
    add_revision(project, "r2", HEAD, "CREATE TABLE r2t (id int)")
    if fast == "true":  # the revision's one message carries its COMMIT
        proxy.reset_after(b"CREATE TABLE r2t")
    else:
        proxy.reset_after(b"COMMIT", once_seen=b"CREATE TABLE r2t")
    result, _ = timed(["neon_migrate.cli", "migrate"], dict(through, MIGRATION_FAST_PATH=fast))
    line = last_line(result)
    assert result.returncode == 3, line
    assert "the connection was lost at the COMMIT of revision r2 (r2 test revision)" in line
    assert "it was committed (read back)" in line, line
    assert one(db_url, "SELECT version_num FROM alembic_version") == "r2"
    assert one(db_url, "SELECT to_regclass('r2t')") == "r2t"


@pytest.mark.parametrize("fast", ["true", "false"], ids=["fast path", "normal path"])
def test_a_connection_lost_before_the_commit_arrived_is_reported_as_not_committed(
    through, proxy, project, db_url, fast
):
    add_revision(project, "r2", HEAD, "CREATE TABLE r2t (id int)")
    if fast == "true":  # the revision's one message carries its COMMIT
        proxy.reset_after(b"CREATE TABLE r2t", forward=False)
    else:
        proxy.reset_after(b"COMMIT", once_seen=b"CREATE TABLE r2t", forward=False)
    result, _ = timed(["neon_migrate.cli", "migrate"], dict(through, MIGRATION_FAST_PATH=fast))
    line = last_line(result)
    assert result.returncode == 3, line
    assert "the connection was lost at the COMMIT of revision r2 (r2 test revision)" in line
    assert "it was NOT committed (read back)" in line, line
    assert one(db_url, "SELECT version_num FROM alembic_version") == HEAD
    assert one(db_url, "SELECT to_regclass('r2t')") is None


def test_a_silent_link_inside_autocommit_block_is_one_line_and_the_lock_goes(
    through, proxy, project, db_url
):
    """Outside a transaction the session holds only the migration lock; the server's
    idle_session_timeout ends it (idle_in_transaction_session_timeout would not)."""
    add_revision(project, "r2", HEAD, source=(
        "    with op.get_context().autocommit_block():\n"
        "        op.execute(\"SELECT 'stall-here'\")"))  # fmt: skip
    proxy.go_silent(on=b"stall-here")
    result, _ = timed(["neon_migrate.cli", "migrate"], through)
    line = last_line(result)
    assert result.returncode == 3, line
    assert "lost its connection" in line
    assert until(db_url, ADVISORY, 0, 15) < 15  # MIGRATION_IDLE_TIMEOUT is 3 s here


def test_a_health_query_that_stalls_is_unreachable_not_a_rights_problem(through, proxy):
    proxy.go_silent(on=b"server_version")
    result, took = timed(["neon_migrate.cli", "verify"], through)
    assert result.returncode == 3, result.stdout
    assert "stopped answering" in result.stdout and "role's rights" not in result.stdout
    ends_within(took, 20)


def test_a_downgrade_lost_at_its_commit_is_reported_the_right_way_round(
    through, proxy, project, db_url
):
    add_revision(project, "r2", HEAD, "CREATE TABLE r2t (id int)").write_text(
        (project["root"] / "migrations" / "versions" / "r2.py").read_text().replace(
            "    raise NotImplementedError('irreversible: a test revision')",
            "    op.execute('DROP TABLE r2t')"))  # fmt: skip
    assert timed(["neon_migrate.cli", "migrate"], through)[0].returncode == 0
    proxy.reset_after(b"COMMIT", once_seen=b"DROP TABLE r2t")
    result, _ = timed(["alembic", "downgrade", "-1"], through)
    last_line(result)  # no traceback
    line = result.stdout.strip().splitlines()[-1]  # alembic's FAILED: line is on stdout
    assert "the connection was lost at the COMMIT of revision r2" in line, line
    assert "it was committed (read back)" in line, line
    assert one(db_url, "SELECT version_num FROM alembic_version") == HEAD


def test_a_silent_link_inside_a_long_statement_is_noticed_within_seconds(
    through, proxy, project, db_url
):
    """A batched backfill sets its own statement_timeout, so the client does not time its
    statements and only TCP bounds them; a middlebox drops that one flow. Before: the
    server ended the session at MIGRATION_IDLE_TIMEOUT, and the client still hung (200 s
    and more). Now a probe on a new session finds the session no longer running the
    statement within seconds, ends it on the server, and the run ends (exit 3)."""
    statements = ("SET statement_timeout = 0", "CREATE TABLE filled (n int)",
                  "INSERT INTO filled SELECT 1 -- stall-here")  # fmt: skip
    add_revision(project, "fill", HEAD, *statements)
    proxy.go_silent(on=b"stall-here", that_connection_only=True)
    env = dict(through, MIGRATION_IDLE_TIMEOUT="60")
    result, took = timed(["neon_migrate.cli", "migrate"], env, timeout=120)
    line = last_line(result)
    print(f"silent link inside a long statement: ended in {took:.1f}s")
    assert result.returncode == 3, line
    ends_within(took, 25, "ending (the probe runs every 5 s)")
    assert line.startswith("error: revision fill (fill test revision) lost its connection"), line
    assert "the server is not running the statement the client waits for" in line
    assert f"the database is now at {HEAD}" in line  # read back on a new connection
    until(db_url, ADVISORY, 0, 5)  # the session was ended: its locks are gone
    assert one(db_url, "SELECT to_regclass('filled') IS NULL")


def test_a_long_statement_on_a_live_link_is_not_taken_for_a_dead_one(through, project, db_url):
    """The probe asks the server: a statement it is running is left alone, however long."""
    add_revision(project, "slow", HEAD, "SET statement_timeout = 0", "SELECT pg_sleep(12)")
    result, took = timed(["neon_migrate.cli", "migrate"], through, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert took >= 12


def test_a_silent_link_during_a_concurrent_build_names_the_lost_link(
    through, proxy, project, db_url
):
    """Before: reported with SQLAlchemy's internal "Can't reconnect until invalid
    transaction is rolled back" instead of the lost link."""
    add_revision(project, "r2", HEAD, source=(
        "    with op.get_context().autocommit_block():\n"
        "        op.execute('CREATE INDEX CONCURRENTLY ix_acc ON account (email) -- stall')\n"
    ))  # fmt: skip
    proxy.go_silent(on=b"-- stall")
    result, _ = timed(["neon_migrate.cli", "migrate"], through, timeout=120)
    line = last_line(result)
    assert result.returncode == 3, line
    assert "Can't reconnect" not in line and "invalid transaction" not in line, line
    assert line.startswith("error: revision r2 (r2 test revision) lost its connection"), line
    assert "no answer from the server" in line
