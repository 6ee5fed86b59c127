"""The bad moments, on real servers: concurrency, a failing revision, a busy table, a cold
start, signals, and connections dropped under the app. Faults between client and server
are injected by a TCP proxy (tests/proxy.py)."""

from __future__ import annotations

import signal
import socket
import struct
import subprocess
import sys
import threading
import time

import psycopg
import pytest
from helpers import CLI, WAITING_FOR_OUR_LOCK, add_revision, alembic, cli, ends_within, rows
from proxy import FaultProxy
from sqlalchemy import text

from neon_migrate.connection.engines import reset_engines
from neon_migrate.connection.session import session_scope
from neon_migrate.migrate.lock import LOCK_KEY

HEAD = "f096d6eff8ee"


def record_run(rev: str) -> str:
    """SQL a revision runs to record that it ran (and which backend ran it)."""
    return f"INSERT INTO migration_runs VALUES ('{rev}', pg_backend_pid())"


def last_line(output: str) -> str:
    assert "Traceback" not in output, output
    return output.strip().splitlines()[-1]


def advisory_locks(url: str) -> int:
    return rows(url, "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'")[0][0]


# --- 1. eight at once ---------------------------------------------------------------------------
@pytest.mark.slow
def test_eight_processes_upgrading_at_once_apply_each_revision_once(project, db_url):
    add_revision(project, "r2", HEAD,
                 "CREATE TABLE migration_runs (revision text, pid int)",
                 record_run("r2"), "SELECT pg_sleep(3)")  # fmt: skip
    add_revision(project, "r3", "r2", record_run("r3"))
    env = dict(project["env"], MIGRATION_LOCK_WAIT="120")
    runs = [
        subprocess.Popen([sys.executable, "-m", "alembic", "upgrade", "head"], env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for _ in range(8)
    ]  # fmt: skip
    outputs = [run.communicate(timeout=180)[0] for run in runs]
    assert [run.returncode for run in runs] == [0] * 8, outputs
    assert sorted(rows(db_url, "SELECT revision, count(*) FROM migration_runs GROUP BY 1")) == [
        ("r2", 1), ("r3", 1)
    ]  # fmt: skip
    assert rows(db_url, "SELECT version_num FROM alembic_version") == [("r3",)]
    appliers = [out for out in outputs if "applied  r2" in out]
    assert len(appliers) == 1
    waiters = [out for out in outputs if "waiting up to 120s for the migration lock" in out]
    assert len(waiters) >= 1, outputs  # those that came while r2 slept said so
    for out in waiters:
        assert "got the migration lock after waiting" in out
    assert all("applied" not in out for out in outputs if out not in appliers)


# --- 2. a failing revision mid-chain ------------------------------------------------------------
def test_failing_revision_mid_chain_stops_at_the_one_before(project, db_url):
    add_revision(project, "r2", HEAD, "CREATE TABLE second (id int)")
    add_revision(project, "r3", "r2", "CREATE TABLE third (id int)", "SELECT 1/0")
    add_revision(project, "r4", "r3", "CREATE TABLE fourth (id int)")
    result = alembic("upgrade", "head", env=project["env"])
    assert result.returncode != 0
    line = last_line(result.stdout)
    assert line.startswith("FAILED: revision r3 (r3 test revision) failed during upgrade:")
    assert "division by zero" in line
    assert rows(db_url, "SELECT version_num FROM alembic_version") == [("r2",)]
    tables = rows(db_url, "SELECT to_regclass('second'), to_regclass('third'), "
                          "to_regclass('fourth')")[0]  # fmt: skip
    assert tables == ("second", None, None)
    assert advisory_locks(db_url) == 0
    again = alembic("upgrade", "head", env=dict(project["env"], MIGRATION_LOCK_WAIT="0"))
    assert "failed during upgrade" in last_line(again.stdout)  # it got the lock at once


# --- 3. lock contention -------------------------------------------------------------------------
@pytest.fixture
def busy_table(db_url, harness_env, db_at_head):
    """`account` read by an open transaction (idle in transaction), as a slow request does."""
    blocker = psycopg.connect(db_url)
    blocker.execute("SET application_name = 'slow-report'")
    blocker.execute("SELECT count(*) FROM account")
    yield blocker
    blocker.close()


def contention_env(project: dict, retries: str) -> dict:
    return dict(project["env"], MIGRATION_LOCK_TIMEOUT="0.5", MIGRATION_LOCK_RETRIES=retries,
                MIGRATION_LOCK_RETRY_DELAY="0.2")  # fmt: skip


def app_query_latencies(db_url: str, stop: threading.Event) -> list[float]:
    """Time an application query on the busy table, again and again, until `stop`."""
    latencies: list[float] = []

    def loop() -> None:
        with psycopg.connect(db_url, autocommit=True) as app:
            while not stop.is_set():
                started = time.monotonic()
                app.execute("SELECT count(*) FROM account")
                latencies.append(time.monotonic() - started)
                time.sleep(0.02)

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    latencies.append(thread)  # type: ignore[arg-type]  # joined by the caller
    return latencies


@pytest.mark.slow
def test_busy_table_retries_then_fails_naming_the_blocker(project, db_url, busy_table, capsys):
    add_revision(project, "r2", HEAD, "ALTER TABLE account ADD COLUMN nickname text")
    stop = threading.Event()
    latencies = app_query_latencies(db_url, stop)
    thread = latencies.pop()
    started = time.monotonic()
    result = alembic("upgrade", "head", env=contention_env(project, retries="3"))
    took = time.monotonic() - started
    stop.set()
    thread.join()
    assert result.returncode != 0
    line = last_line(result.stdout)
    assert line.startswith("FAILED: revision r2 (r2 test revision) could not get its locks in "
                           "4 attempts")  # fmt: skip
    assert f"held by pid {busy_table.info.backend_pid} (idle in transaction" in line
    assert "SELECT count(*) FROM account" in line
    assert result.stdout.count("lock_timeout (500ms) waiting for pid") == 3
    assert rows(db_url, "SELECT version_num FROM alembic_version") == [(HEAD,)]
    # 4 attempts of 0.5 s plus 3 backoffs (0.2, 0.4, 0.8 s at most, jittered) and start-up.
    assert took > 2.0
    ends_within(took, 12, "4 attempts")
    blocked = max(latencies)
    assert blocked < 0.5 + 0.3, f"an app query waited {blocked:.2f}s behind the migration"
    with capsys.disabled():
        print(
            f"\nlock contention: failed after {took:.1f}s; app query blocked at most "
            f"{blocked * 1000:.0f} ms ({len(latencies)} queries)"
        )


@pytest.mark.slow
def test_busy_table_then_blocker_leaves_and_the_migration_succeeds(project, db_url, busy_table):
    add_revision(project, "r2", HEAD, "ALTER TABLE account ADD COLUMN nickname text")
    run = subprocess.Popen([sys.executable, "-m", "alembic", "upgrade", "head"],
                           env=contention_env(project, retries="20"), stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True)  # fmt: skip
    seen = []
    for line in run.stdout:  # the slow request finishes once the migration has had to retry
        seen.append(line)
        if "lock_timeout (500ms) waiting for pid" in line:
            busy_table.commit()
            break
    output = "".join(seen) + run.communicate(timeout=60)[0]
    assert run.returncode == 0, output
    assert "lock_timeout (500ms) waiting for pid" in output
    assert "applied  r2" in output
    assert rows(db_url, "SELECT version_num FROM alembic_version") == [("r2",)]


# --- 4. cold start ------------------------------------------------------------------------------
@pytest.fixture
def proxy(pg_server):
    front = FaultProxy(pg_server.port)
    yield front
    front.close()


def through(proxy: FaultProxy, harness_env: dict, db_url: str, **extra: str) -> dict:
    url = db_url.replace(f":{proxy.target[1]}/", f":{proxy.port}/")
    return dict(harness_env, DATABASE_URL=url, **extra)


@pytest.mark.slow
def test_cold_start_is_retried_until_the_compute_answers(proxy, harness_env, db_url, capsys):
    proxy.refuse()
    run = subprocess.Popen([*CLI, "migrate"], env=through(proxy, harness_env, db_url),
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)  # fmt: skip
    seen = []
    for line in run.stdout:  # the compute answers once the run has been refused twice
        seen.append(line)
        if "".join(seen).count("failed (attempt") == 2:
            proxy.accept()
            woke = time.monotonic()
            break
    output = "".join(seen) + run.communicate(timeout=60)[0]
    took = time.monotonic() - woke
    assert run.returncode == 0, output
    attempts = output.count("failed (attempt")
    assert attempts >= 2, output
    assert "Connection refused" in output and "retrying in" in output
    assert "applied 1 revision(s)" in output
    ends_within(took, 5, "migrating once the compute answers")  # the next retry, then a run
    with capsys.disabled():
        print(f"\ncold start: {attempts} attempts refused; migrated {took:.1f}s after it answered")


def test_refusing_for_good_fails_within_the_bound(proxy, harness_env, db_url, capsys):
    proxy.refuse()
    started = time.monotonic()
    result = cli("migrate", env=through(proxy, harness_env, db_url, DB_CONNECT_RETRY_SECONDS="2"))
    took = time.monotonic() - started
    assert result.returncode == 3
    assert last_line(result.stdout).startswith(f"error: cannot connect to 127.0.0.1:{proxy.port}")
    assert "Connection refused" in last_line(result.stdout)
    assert took > 2.0
    ends_within(took, 8, "refused for good")  # the 2 s budget, a last backoff, start-up
    with capsys.disabled():
        print(f"\nrefused for good: failed after {took:.1f}s (DB_CONNECT_RETRY_SECONDS=2)")


@pytest.fixture
def disabled_endpoint():
    """A server that answers every login the way Neon answers for a disabled endpoint."""
    listener = socket.create_server(("127.0.0.1", 0))
    message = b"The endpoint has been disabled. Enable it using Neon API and retry."
    fields = b"SFATAL\0VFATAL\0CXX000\0M" + message + b"\0\0"
    error = b"E" + struct.pack("!I", len(fields) + 4) + fields

    def serve() -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            with conn:
                length, code = struct.unpack("!II", conn.recv(8))
                if code == 80877103:  # SSLRequest: no TLS here, then the startup packet
                    conn.sendall(b"N")
                    length = struct.unpack("!I", conn.recv(4))[0]
                    code = None
                conn.recv(length - (8 if code else 4))
                conn.sendall(error)

    threading.Thread(target=serve, daemon=True).start()
    yield listener.getsockname()[1]
    listener.close()


@pytest.mark.parametrize("fault", ["wrong password", "endpoint disabled", "unknown host"])
def test_permanent_errors_are_not_retried(harness_env, db_url, pg_server, disabled_endpoint, fault):
    url = {
        "wrong password": db_url.replace(pg_server.password, "wrong"),
        "endpoint disabled": f"postgresql://u:pw@127.0.0.1:{disabled_endpoint}/db",
        "unknown host": "postgresql://u:pw@no-such-host.invalid/db",
    }[fault]
    started = time.monotonic()
    result = cli("migrate", env=dict(harness_env, DATABASE_URL=url, DB_CONNECT_RETRY_SECONDS="30"))
    took = time.monotonic() - started
    assert result.returncode in (2, 3)
    assert "retrying" not in result.stdout
    ends_within(took, 5, f"{fault} (as if retried?)")  # retrying would take 30 s
    expected = {
        "wrong password": "password authentication failed",
        "endpoint disabled": "The endpoint has been disabled",
        "unknown host": "unknown host in DATABASE_URL",
    }[fault]
    assert expected in last_line(result.stdout)


# --- 5. signals ---------------------------------------------------------------------------------
def wait_for_sleeper(url: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    query = (
        "SELECT count(*) FROM pg_stat_activity "
        "WHERE pid <> pg_backend_pid() AND query LIKE '%SELECT pg_sleep(60)%'"
    )
    while rows(url, query)[0][0] == 0:
        if time.monotonic() > deadline:
            pytest.fail("the slow revision never started")
        time.sleep(0.05)


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
@pytest.mark.parametrize(
    "command", [["alembic", "upgrade", "head"], ["neon_migrate.cli", "migrate"]]
)
def test_signal_during_a_slow_revision(project, db_url, signum, command, capsys):
    add_revision(project, "r2", HEAD, "CREATE TABLE half_done (id int)", "SELECT pg_sleep(60)")
    run = subprocess.Popen([sys.executable, "-m", *command], env=project["env"],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)  # fmt: skip
    wait_for_sleeper(db_url)
    sent = time.monotonic()
    run.send_signal(signum)
    output = run.communicate(timeout=30)[0]
    latency = time.monotonic() - sent
    assert run.returncode != 0
    if command[0] == "neon_migrate.cli":
        assert run.returncode == 128 + signum, output
    line = last_line(output)
    assert f"interrupted by {signal.Signals(signum).name} during revision r2" in line
    ends_within(latency, 2.0, "exit after the signal")  # not the 60 s sleep
    assert rows(db_url, "SELECT version_num FROM alembic_version") == [(HEAD,)]
    assert rows(db_url, "SELECT to_regclass('half_done')") == [(None,)]
    assert advisory_locks(db_url) == 0
    sleepers = (
        "SELECT count(*) FROM pg_stat_activity "
        "WHERE pid <> pg_backend_pid() AND query LIKE '%SELECT pg_sleep(60)%'"
    )
    assert rows(db_url, sleepers) == [(0,)]
    with capsys.disabled():
        print(f"\n{signal.Signals(signum).name} to {command[0]}: exited in {latency * 1000:.0f} ms")


# --- 6. connections dropped under the app -------------------------------------------------------
def test_dropped_app_connections_are_replaced_without_an_error(twin_env, db_url, monkeypatch):
    for door in ("pooled", "direct"):
        if door == "direct":
            monkeypatch.setenv("DATABASE_URL", db_url)
            reset_engines()
        from neon_migrate.connection.engines import get_app_engine

        engine = get_app_engine()
        held = [engine.connect() for _ in range(4)]
        for conn in held:  # four transactions at once: four server connections
            conn.execute(text("SELECT 1"))
        for conn in held:
            conn.commit()
            conn.close()
        killed = rows(db_url, "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                              "WHERE application_name = 'app'")[0][0]  # fmt: skip
        assert killed >= 1, door
        # pg_terminate_backend only signals; wait until the backends are gone, as they
        # are long before the next request when a compute suspends. (A request racing a
        # drop by a millisecond can fail on any pool, pinged or not.)
        deadline = time.monotonic() + 5
        gone = "SELECT count(*) = 0 FROM pg_stat_activity WHERE application_name = 'app'"
        while not rows(db_url, gone)[0][0] and time.monotonic() < deadline:
            time.sleep(0.01)
        for _ in range(8):  # as after a compute suspend: then requests come in again
            with session_scope() as session:
                assert session.execute(text("SELECT 1")).scalar() == 1


@pytest.mark.slow
def test_signal_among_many_fast_statements_is_not_lost(project, db_url):
    """A signal landing between statements, with none running to cancel, still stops it."""
    add_revision(project, "r2", HEAD, "CREATE TABLE many (id int)",
                 *[f"INSERT INTO many VALUES ({i})" for i in range(20000)])  # fmt: skip
    run = subprocess.Popen([sys.executable, "-m", "alembic", "upgrade", "head"],
                           env=project["env"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           text=True)  # fmt: skip
    deadline = time.monotonic() + 30
    while not rows(db_url, "SELECT count(*) FROM pg_stat_activity "
                           "WHERE pid <> pg_backend_pid() "
                           "AND query LIKE '%INSERT INTO many%'")[0][0]:  # fmt: skip
        if time.monotonic() > deadline:
            pytest.fail("the revision never started")
        time.sleep(0.01)
    run.send_signal(signal.SIGTERM)
    output = run.communicate(timeout=30)[0]
    assert run.returncode != 0, output
    assert "interrupted by SIGTERM during revision r2" in last_line(output)
    assert rows(db_url, "SELECT to_regclass('many')") == [(None,)]
    assert advisory_locks(db_url) == 0


def test_signal_while_waiting_for_the_lock(project, db_url):
    with psycopg.connect(db_url, autocommit=True) as holder:
        holder.execute("SELECT pg_advisory_lock(%s)", (LOCK_KEY,))
        run = subprocess.Popen(
            [*CLI, "migrate"],
            env=dict(project["env"], MIGRATION_LOCK_WAIT="60"),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        deadline = time.monotonic() + 30
        while rows(db_url, WAITING_FOR_OUR_LOCK)[0][0] == 0:
            if time.monotonic() > deadline:
                pytest.fail("the run never queued on the lock")
            time.sleep(0.05)
        sent = time.monotonic()
        run.send_signal(signal.SIGTERM)
        output = run.communicate(timeout=30)[0]
        latency = time.monotonic() - sent
    assert run.returncode == 128 + signal.SIGTERM
    assert last_line(output).startswith("error: interrupted by SIGTERM; no revision was half")
    ends_within(latency, 2.0, "exit after the signal")
    assert rows(db_url, "SELECT to_regclass('alembic_version')") == [(None,)]


def test_a_short_statement_timeout_does_not_cut_the_lock_wait(project, db_url):
    with psycopg.connect(db_url, autocommit=True) as holder:
        holder.execute("SELECT pg_advisory_lock(%s)", (LOCK_KEY,))
        started = time.monotonic()
        result = cli("migrate", env=dict(project["env"], MIGRATION_STATEMENT_TIMEOUT="1",
                                         MIGRATION_LOCK_WAIT="3"))  # fmt: skip
        took = time.monotonic() - started
    assert "MIGRATION_LOCK_WAIT=3s" in last_line(result.stdout), result.stdout
    assert took >= 3


@pytest.mark.slow
def test_revision_that_commits_midway_is_never_retried(project, db_url, busy_table):
    """autocommit_block commits part of a revision; running it again would repeat that."""
    add_revision(project, "r2", HEAD, source=(
        "    with op.get_context().autocommit_block():\n"
        "        op.execute('CREATE TABLE midway (id int)')\n"
        "    op.execute('ALTER TABLE account ADD COLUMN nickname text')"))  # fmt: skip
    result = alembic("upgrade", "head", env=contention_env(project, retries="3"))
    assert result.returncode != 0
    assert "retry" not in result.stdout
    assert "canceling statement due to lock timeout" in last_line(result.stdout)
