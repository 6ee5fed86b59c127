"""Every failure a user can cause: one line with a fix, a distinct exit code, no password."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import quote

import psycopg
import pytest
from alembic import command
from alembic.config import Config
from alembic.util import CommandError
from helpers import ROOT, add_revision, alembic, cli, verify_line
from sqlalchemy import create_engine

PASSWORD = "s3cr3t-P@ss%word"
POOLER = "ep-cool-darkness-a1b2c3d4-pooler.us-east-2.aws.neon.tech"
HEAD = "f096d6eff8ee"


def assert_no_password(output: str) -> None:
    for form in (PASSWORD, quote(PASSWORD, safe=""), quote(PASSWORD)):
        assert form not in output


def error_line(output: str) -> str:
    """The one line a command ends with on failure; nothing that looks like a traceback."""
    assert "Traceback" not in output, output
    lines = [line for line in output.strip().splitlines() if line.strip()]
    return lines[-1]


@pytest.fixture
def wrong_password_env(harness_env, pg_server, postgresql):
    url = pg_server.url(postgresql.info.dbname, password=PASSWORD)
    return dict(harness_env, DATABASE_URL=url)


@pytest.mark.parametrize(
    "args",
    [
        ["cli", "migrate"],
        ["cli", "verify"],
        ["alembic", "upgrade", "head"],
        ["alembic", "current"],
        ["alembic", "check"],
    ],
    ids=" ".join,
)
def test_wrong_password_is_one_line_without_the_password(wrong_password_env, args):
    runner = cli if args[0] == "cli" else alembic
    result = runner(*args[1:], env=wrong_password_env)
    assert result.returncode != 0
    line = error_line(result.stdout)
    if args == ["cli", "verify"]:  # verify reports every item, then names the failed ones
        assert line == "verify: FAILED: direct, pooled"
        line = verify_line(result.stdout, "direct")
    assert "password authentication failed" in line
    assert "Fix: check the user and password in" in line
    assert_no_password(result.stdout)
    if args[0] == "cli":
        assert result.returncode == 2  # configuration error


def test_malformed_url_exits_2_with_the_variable_named(harness_env):
    env = dict(harness_env, DATABASE_URL=f"postgresql://app:{quote(PASSWORD)}@db:port/x")
    result = cli("migrate", env=env)
    assert result.returncode == 2
    line = error_line(result.stdout)
    assert line.startswith("error: DATABASE_URL has a port that is not a number")
    assert_no_password(result.stdout)


def test_unsupported_scheme_through_plain_alembic(harness_env):
    env = dict(harness_env, DATABASE_URL=f"mysql://app:{quote(PASSWORD)}@db/x")
    result = alembic("upgrade", "head", env=env)
    assert result.returncode != 0
    assert error_line(result.stdout).startswith("FAILED: DATABASE_URL has scheme 'mysql'")
    assert_no_password(result.stdout)


def test_pooled_url_for_migrations_is_refused(harness_env):
    env = dict(harness_env, DATABASE_URL_DIRECT=f"postgresql://app:pw@{POOLER}/neondb")
    result = cli("migrate", env=env)
    assert result.returncode == 2
    line = error_line(result.stdout)
    assert "DATABASE_URL_DIRECT points at Neon's pooled endpoint" in line
    assert "remove '-pooler'" in line


def test_pooled_engine_handed_to_env_py_is_refused(harness_env):
    """The check runs before any connect, so no Neon is needed to prove it."""
    config = Config(str(ROOT / "alembic.ini"))
    config.attributes["connection"] = create_engine(f"postgresql+psycopg2://app:pw@{POOLER}/db")
    with pytest.raises(CommandError, match="cannot run through Neon's pooled endpoint"):
        command.upgrade(config, "head")


def test_unreachable_host_exits_3_after_the_retry_budget(harness_env):
    env = dict(
        harness_env,
        DATABASE_URL="postgresql://app:pw@127.0.0.1:1/db",
        DB_CONNECT_RETRY_SECONDS="1",
    )
    result = cli("migrate", env=env)
    assert result.returncode == 3, result.stdout
    line = error_line(result.stdout)
    assert line.startswith("error: cannot connect to 127.0.0.1:1 after")
    assert "Connection refused" in line
    assert "retrying" in result.stdout  # connection refused is transient: it was retried


def test_invalid_setting_exits_2_naming_variable_and_range(harness_env):
    result = cli("migrate", env=dict(harness_env, DB_POOL_SIZE="0"))
    assert result.returncode == 2
    assert error_line(result.stdout) == (
        "error: DB_POOL_SIZE='0' is invalid: allowed from 1 to 100. "
        "Fix: correct the variable in the environment or .env."
    )


def test_verify_on_a_database_behind_head_names_the_failing_items(harness_env):
    result = cli("verify", env=harness_env)
    assert result.returncode == 1
    assert (
        f"verify: direct   FAIL  revision none (empty database) (behind head {HEAD})"
        in result.stdout
    )
    assert error_line(result.stdout) == "verify: FAILED: direct, pooled"


def test_failing_revision_is_named_and_rolled_back_alone(db_url, project):
    add_revision(project, "r2good", HEAD, "CREATE TABLE good (id int)")
    add_revision(project, "r3bad", "r2good", "CREATE TABLE half (id int)", "SELECT 1/0")
    result = alembic("upgrade", "head", env=project["env"])
    assert result.returncode != 0
    line = error_line(result.stdout)
    assert line.startswith("FAILED: revision r3bad (r3bad test revision) failed during upgrade:")
    assert "division by zero" in line
    with psycopg.connect(db_url) as conn:
        assert conn.execute("SELECT version_num FROM alembic_version").fetchall() == [("r2good",)]
        assert conn.execute("SELECT to_regclass('good')").fetchone()[0] == "good"
        assert conn.execute("SELECT to_regclass('half')").fetchone()[0] is None
        assert (
            conn.execute("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'").fetchone()[0]
            == 0
        )


def test_revision_failing_at_commit_is_named(db_url, project):
    """A deferred constraint fails at COMMIT, after the revision's function returned."""
    add_revision(
        project,
        "r2deferred",
        HEAD,
        "CREATE TABLE parent (id int PRIMARY KEY)",
        "CREATE TABLE child (parent_id int REFERENCES parent DEFERRABLE INITIALLY DEFERRED)",
        "INSERT INTO child VALUES (42)",
    )
    result = alembic("upgrade", "head", env=project["env"])
    assert result.returncode != 0
    line = error_line(result.stdout)
    assert line.startswith(
        "FAILED: revision r2deferred (r2deferred test revision) failed at commit"
    )
    assert "violates foreign key constraint" in line
    with psycopg.connect(db_url) as conn:
        assert conn.execute("SELECT version_num FROM alembic_version").fetchall() == [(HEAD,)]
        assert conn.execute("SELECT to_regclass('child')").fetchone()[0] is None


def test_invalid_connection_option_is_a_configuration_error(harness_env, db_url):
    result = cli("migrate", env=dict(harness_env, DATABASE_URL=db_url + "?foo=bar"))
    assert result.returncode == 2, result.stdout
    line = error_line(result.stdout)
    assert line.startswith("error: DATABASE_URL has an invalid connection option")
    assert '"foo"' in line  # libpq names the option it does not know


def test_verify_on_a_foreign_alembic_version_table_is_one_line(harness_env, db_url):
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE alembic_version (id int)")
    result = cli("verify", env=harness_env)
    assert result.returncode == 1
    assert "Traceback" not in result.stdout
    direct = verify_line(result.stdout, "direct")
    assert "endpoint answered but the health query failed" in direct
    assert 'column "version_num" does not exist' in direct


@pytest.fixture
def tls_then_hang_up():
    """A server that accepts TLS (answers 'S' to SSLRequest) and then hangs up: what a
    compute being torn down mid-handshake looks like."""
    import socket
    import threading

    server = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def serve():
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except TimeoutError:
                continue
            with conn:
                conn.recv(8)
                conn.sendall(b"S")

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield server.getsockname()[1]
    stop.set()
    thread.join()
    server.close()


def test_transient_tls_hang_up_is_retried_then_unreachable(harness_env, tls_then_hang_up):
    url = f"postgresql://app:{quote(PASSWORD)}@127.0.0.1:{tls_then_hang_up}/db?sslmode=require"
    env = dict(harness_env, DATABASE_URL=url, DB_CONNECT_RETRY_SECONDS="1")
    result = cli("migrate", env=env)
    assert result.returncode == 3, result.stdout
    assert "retrying" in result.stdout
    assert error_line(result.stdout).startswith(
        f"error: cannot connect to 127.0.0.1:{tls_then_hang_up}"
    )
    assert_no_password(result.stdout)


NEON_PLAINTEXT = (
    "postgresql://app:pw@ep-cool-darkness-a1b2c3d4-pooler.us-east-2.aws.neon.tech/app"
    "?sslmode=disable"
)


@pytest.mark.parametrize(
    "args",
    [["cli", "migrate"], ["cli", "verify"], ["cli", "check"], ["alembic", "downgrade", "-1"],
     ["alembic", "upgrade", "head"]],
    ids=" ".join,
)  # fmt: skip
def test_sslmode_disable_on_a_neon_host_is_refused_before_any_statement(harness_env, args):
    """migrate applied a revision in plaintext, and downgrade ran without a word."""
    runner = cli if args[0] == "cli" else alembic
    result = runner(*args[1:], env=dict(harness_env, DATABASE_URL=NEON_PLAINTEXT))
    assert result.returncode != 0
    output = result.stdout
    assert "has sslmode=disable for a Neon host" in output, output
    assert "Fix: use sslmode=require (or verify-full)" in output
    assert "could not translate host name" not in output  # refused before any connect


@pytest.mark.parametrize(
    "args",
    [["cli", "migrate"], ["cli", "verify"], ["alembic", "upgrade", "head"],
     ["alembic", "current"]],
    ids=" ".join,
)  # fmt: skip
def test_a_revision_file_with_a_syntax_error_is_one_line(project, args):
    (project["root"] / "migrations" / "versions" / "broken.py").write_text("def upgrade(:\n")
    runner = cli if args[0] == "cli" else alembic
    result = runner(*args[1:], env=project["env"])
    assert result.returncode != 0
    line = error_line(result.stdout)
    assert "broken.py, line 1: invalid syntax: a revision file does not compile" in line
    assert "Fix: fix that revision file" in line


def test_a_graph_alembic_cannot_read_is_one_line(project):
    """A down_revision naming no revision broke deep inside Alembic with a KeyError."""
    path = add_revision(project, "orphan", "no_such_parent", "SELECT 1")
    path.write_text(path.read_text().replace('"no_such_parent"', '"None"'))
    result = alembic("upgrade", "head", env=project["env"])
    assert result.returncode != 0
    line = error_line(result.stdout)
    assert line.startswith("FAILED: the revision scripts cannot be loaded"), line


def test_an_env_file_that_is_not_utf8_is_one_line(harness_env):
    Path(".env").write_bytes(b"DATABASE_URL=postgresql://u:p\xe9@h/db\n")  # Latin-1
    result = cli("verify", env=harness_env)
    assert result.returncode == 2
    line = error_line(result.stdout)
    assert line.startswith("error: .env is not UTF-8 text (byte 0xe9"), line


def test_an_empty_versions_folder_says_to_write_the_first_revision(project):
    for path in (project["root"] / "migrations" / "versions").glob("*.py"):
        path.unlink()
    result = cli("migrate", env=project["env"])
    assert result.returncode == 1
    assert "migrate: no revisions to apply" in result.stdout
    assert "no revisions yet: write the first with `make revision" in result.stdout
    assert "merge" not in result.stdout


def test_a_unix_socket_that_fails_is_unreachable_and_named(harness_env, tmp_path):
    """Before: exit 1, and `status` named localhost:5432 instead of the socket."""
    url = f"postgresql://u:p@/db?host={tmp_path}/nosuchdir"
    env = dict(harness_env, DATABASE_URL=url, DB_CONNECT_RETRY_SECONDS="0")
    for name in ("status", "migrate"):
        result = cli(name, env=env)
        assert result.returncode == 3, result.stdout
        line = result.stdout.strip().splitlines()[-1]
        assert f"cannot connect to socket {tmp_path}/nosuchdir/.s.PGSQL.5432" in line, line
        assert "localhost" not in line and "Fix: check the socket folder" in line
