"""No secret is ever printed: every command, success and failure, with a password that is
easy to leak (it needs percent-encoding), and every exception text on the way."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import traceback
from urllib.parse import quote

import psycopg
import pytest
from alembic import command
from alembic.config import Config
from helpers import CLI, ROOT, WAITING_FOR_OUR_LOCK, alembic, cli, run

from neon_migrate.connection.engines import reset_engines
from neon_migrate.migrate.lock import LOCK_KEY

PASSWORD = "s3cr3t-P@ss%word"
FORMS = {PASSWORD, quote(PASSWORD, safe=""), quote(PASSWORD), "s3cr3t"}
POOLER = "ep-cool-darkness-a1b2c3d4-pooler.us-east-2.aws.neon.tech"


def assert_clean(text: str) -> None:
    leaked = [form for form in FORMS if form in text]
    assert not leaked, f"password form(s) {leaked} in:\n{text}"


def login_role(pg_server, name: str, password: str) -> str:
    with psycopg.connect(pg_server.url("postgres"), autocommit=True) as admin:
        admin.execute(f"DROP ROLE IF EXISTS {name}")
        admin.execute(f"CREATE ROLE {name} LOGIN SUPERUSER PASSWORD '{password}'")
    return name


@pytest.fixture(scope="session")
def secret_role(pg_server) -> str:
    return login_role(pg_server, "secretive", PASSWORD)


@pytest.fixture
def secret_env(harness_env, secret_role, pg_server, postgresql) -> dict:
    url = f"postgresql://{secret_role}:{quote(PASSWORD, safe='')}@127.0.0.1:{pg_server.port}"
    return dict(harness_env, DATABASE_URL=f"{url}/{postgresql.info.dbname}",
                DATABASE_URL_DIRECT=f"{url}/{postgresql.info.dbname}")  # fmt: skip


def with_url(env: dict, url: str, **extra: str) -> dict:
    return {**{k: v for k, v in env.items() if k != "DATABASE_URL_DIRECT"},
            "DATABASE_URL": url, **extra}  # fmt: skip


@pytest.mark.slow
def test_every_command_and_error_path(secret_env, pg_server, tmp_path):
    good = secret_env["DATABASE_URL"]
    secret = quote(PASSWORD, safe="")
    base = good.rsplit("/", 1)[0]
    outputs: dict[str, str] = {}

    def record(name: str, result) -> None:
        outputs[name] = result.stdout

    # successes, through every entry point
    record("make migrate", run(["make", "-s", "-C", str(ROOT), "migrate"], secret_env))
    record("make verify", run(["make", "-s", "-C", str(ROOT), "verify"], secret_env))
    for args in (["current"], ["history"], ["check"], ["upgrade", "head", "--sql"],
                 ["downgrade", "base"], ["upgrade", "head"]):  # fmt: skip
        record(f"alembic {' '.join(args)}", alembic(*args, env=secret_env))
    # failures a user can cause
    cases = {
        "wrong password": with_url(
            secret_env, f"postgresql://postgres:{secret}@127.0.0.1:{pg_server.port}/postgres"
        ),
        "unknown database": with_url(secret_env, f"{base}/no_such_db"),
        "unreachable": with_url(
            secret_env, f"postgresql://u:{secret}@127.0.0.1:1/db", DB_CONNECT_RETRY_SECONDS="1"
        ),
        "malformed port": with_url(secret_env, f"postgresql://u:{secret}@h:port/db"),
        "unsupported scheme": with_url(secret_env, f"mysql://u:{secret}@h/db"),
        "password with no host": with_url(secret_env, f"postgresql://u:{secret}@/db"),
        "pooled for migrations": dict(
            secret_env, DATABASE_URL_DIRECT=f"postgresql://u:{secret}@{POOLER}/db"
        ),
        "tls root missing": with_url(secret_env, f"{good}?sslmode=verify-full&sslrootcert=/nope"),
        "invalid option": with_url(secret_env, f"{good}?foo=bar"),
        "invalid setting": dict(secret_env, DB_POOL_SIZE="0"),
    }
    check = [sys.executable, str(ROOT / "scripts" / "predeploy_check.py")]
    record("predeploy table", run(check, secret_env))
    record("predeploy json", run([*check, "--json"], secret_env))
    summary = tmp_path / "step-summary.md"
    on_actions = dict(secret_env, GITHUB_ACTIONS="true", GITHUB_STEP_SUMMARY=str(summary))
    record("predeploy markdown, annotations", run([*check, "--format", "markdown"], on_actions))
    outputs["predeploy job summary"] = summary.read_text()
    for name, env in cases.items():
        record(f"predeploy json: {name}", run([*check, "--json"], env))
        record(f"cli migrate: {name}", cli("migrate", env=env))
        record(f"cli verify: {name}", cli("verify", env=env))
        record(f"alembic upgrade: {name}", alembic("upgrade", "head", env=env))
    # lock busy, and a signal mid-revision
    with psycopg.connect(good, autocommit=True) as holder:
        holder.execute("SELECT pg_advisory_lock(%s)", (LOCK_KEY,))
        record("lock busy", cli("migrate", env=dict(secret_env, MIGRATION_LOCK_WAIT="0")))
    record("interrupted", interrupted_run(secret_env))

    failed = [name for name, out in outputs.items() if any(f in out for f in FORMS)]
    assert failed == [], {name: outputs[name] for name in failed}
    assert all(outputs.values()), [name for name, out in outputs.items() if not out]
    assert "FAILED" in outputs["alembic upgrade: wrong password"]  # the paths really failed
    assert "error:" in outputs["cli migrate: unreachable"]


def interrupted_run(env: dict) -> subprocess.CompletedProcess:
    """SIGTERM while waiting for the migration lock (so behind head: at head, no lock)."""
    assert alembic("downgrade", "base", env=env).returncode == 0
    proc = subprocess.Popen(
        [*CLI, "migrate"], env=dict(env, MIGRATION_LOCK_WAIT="30"),
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    with psycopg.connect(env["DATABASE_URL"], autocommit=True) as holder:
        holder.execute("SELECT pg_advisory_lock(%s)", (LOCK_KEY,))
        deadline = time.monotonic() + 60
        while holder.execute(WAITING_FOR_OUR_LOCK).fetchone()[0] == 0:  # not yet queued
            assert time.monotonic() < deadline and proc.poll() is None, "never queued"
            time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        output = proc.communicate(timeout=30)[0]
    assert "interrupted by SIGTERM" in output
    return subprocess.CompletedProcess(proc.args, proc.returncode, output)


@pytest.mark.parametrize(
    "url",
    [
        f"postgresql://postgres:{quote(PASSWORD, safe='')}@127.0.0.1:{{port}}/postgres",
        f"postgresql://u:{quote(PASSWORD, safe='')}@127.0.0.1:1/db",
        f"postgresql://u:{quote(PASSWORD, safe='')}@h:x/db",
    ],
    ids=["wrong password", "unreachable", "malformed"],
)
def test_exception_chains_hold_no_password(harness_env, pg_server, monkeypatch, url):
    """What a caller embedding the harness sees: the exception and everything it chains."""
    monkeypatch.setenv("DATABASE_URL", url.format(port=pg_server.port))
    monkeypatch.setenv("DB_CONNECT_RETRY_SECONDS", "0")
    reset_engines()
    with pytest.raises(Exception) as caught:
        command.upgrade(Config(str(ROOT / "alembic.ini")), "head")
    text = "".join(traceback.format_exception(caught.value))
    assert_clean(text + repr(caught.value))


def test_a_password_left_unencoded_in_the_url_is_refused_unshown(secret_env, pg_server, postgresql):
    """People paste `user:p@ss@host`: libpq (psql, other tools) reads host `ss@host`, so
    the URL is refused before anything connects, with the fix and without the password."""
    url = (f"postgresql://secretive:{PASSWORD}@127.0.0.1:{pg_server.port}/"
           f"{postgresql.info.dbname}")  # fmt: skip
    env = {k: v for k, v in secret_env.items() if k != "DATABASE_URL_DIRECT"}
    result = cli("migrate", env=dict(env, DATABASE_URL=url))
    assert result.returncode == 2, result.stdout
    assert "more than one '@' before its host" in result.stdout
    assert "'@' as %40" in result.stdout
    assert_clean(result.stdout)


# ---- passwords masking used to miss, or mangle: by structure, end to end ---------------------

BAD_ESCAPE = "w0rd%zzSECRET"  # '%zz' is no percent-escape: libpq quoted it in its error


def assert_absent(text: str, *fragments: str) -> None:
    leaked = [fragment for fragment in fragments if fragment in text]
    assert not leaked, f"{leaked} in:\n{text}"


def shown(result, command: str) -> str:
    """What a command showed, as text: `check --json`'s target and messages, decoded."""
    if "--json" not in command:
        return result.stdout
    report = json.loads(result.stdout)
    return "\n".join([*report["target"], *(check["message"] for check in report["checks"])])


@pytest.fixture(scope="session")
def escaped_role(pg_server) -> str:
    """A role whose password holds a bad percent-escape."""
    return login_role(pg_server, "escaped", BAD_ESCAPE)


def db_base(pg_server, postgresql, userinfo: str) -> str:
    return f"postgresql://{userinfo}@127.0.0.1:{pg_server.port}/{postgresql.info.dbname}"


@pytest.mark.parametrize("command", ["verify", "check --json"])
def test_a_badly_escaped_query_password_is_never_printed(
    harness_env, secret_role, pg_server, postgresql, command
):
    """`?password=w0rd%zzSECRET` for the wrong role: a login failure, not the password."""
    url = db_base(pg_server, postgresql, secret_role) + f"?password={BAD_ESCAPE}"
    result = cli(*command.split(), env=with_url(harness_env, url))
    assert result.returncode == 2, result.stdout
    assert 'password authentication failed for user "secretive"' in shown(result, command)
    assert_absent(result.stdout, BAD_ESCAPE, "SECRET", "w0rd", "Traceback")


def test_a_badly_escaped_query_password_logs_in(harness_env, escaped_role, pg_server, postgresql):
    """libpq gets it re-encoded (%25zz): the password meant, not a parse error."""
    url = db_base(pg_server, postgresql, escaped_role) + f"?password={BAD_ESCAPE}"
    result = cli("migrate", env=with_url(harness_env, url))
    assert result.returncode == 0, result.stdout
    assert "verify: direct   ok" in result.stdout
    assert_absent(result.stdout, BAD_ESCAPE, "SECRET")


def test_the_health_route_never_shows_a_badly_escaped_password(
    harness_env, secret_role, pg_server, postgresql, monkeypatch
):
    from fastapi import FastAPI
    from fastapi.testclient import TestClient

    from neon_migrate.web.health import health_router

    url = db_base(pg_server, postgresql, secret_role) + f"?password={BAD_ESCAPE}"
    monkeypatch.setenv("DATABASE_URL", url)
    reset_engines()
    app = FastAPI()
    app.include_router(health_router())
    response = TestClient(app).get("/health/db")
    assert response.status_code == 503
    assert "password authentication failed" in response.json()["reason"]
    assert_absent(response.text, BAD_ESCAPE, "SECRET", "w0rd")


@pytest.mark.parametrize(
    ("userinfo", "port", "says"),
    [
        ("secretive:a", None, 'password authentication failed for user "secretive"'),
        ("u:a", 1, "Is the server running on that host and accepting TCP/IP connections"),
        ("u:o", 1, "Connection refused"),
    ],
    ids=["wrong one-letter password", "refused, password a", "refused, password o"],
)
@pytest.mark.slow
@pytest.mark.parametrize("command", ["verify", "check --json"])
def test_a_one_letter_password_masks_no_letter_of_the_message(
    harness_env, pg_server, postgresql, secret_role, userinfo, port, says, command
):
    """Masking replaced every 'a' of the driver's text with *** ("th***t host")."""
    url = f"postgresql://{userinfo}@127.0.0.1:{port or pg_server.port}/{postgresql.info.dbname}"
    env = with_url(harness_env, url, DB_CONNECT_RETRY_SECONDS="0")
    result = cli(*command.split(), env=env)
    assert result.returncode in (2, 3), result.stdout
    text = shown(result, command)
    assert says in text
    assert "***" not in text.replace(f"{userinfo.partition(':')[0]}:***@", "")


@pytest.mark.slow
@pytest.mark.parametrize("command", ["verify", "check --json", "migrate"])
@pytest.mark.parametrize("password", ["pa/ss", "12/34", "pa?ss"])
def test_an_unencoded_slash_in_the_password_says_to_encode_it(
    harness_env, pg_server, postgresql, secret_role, password, command
):
    """Not "a port that is not a number" (with 'pa' as the port): the password's '/'."""
    url = db_base(pg_server, postgresql, f"{secret_role}:{password}")
    result = cli(*command.split(), env=with_url(harness_env, url))
    assert result.returncode == 2, result.stdout
    text = shown(result, command)
    assert "its password seems to hold an unencoded '/' or '?'" in text
    assert "percent-encode the password in DATABASE_URL: '/' as %2F" in text
    assert "port that is not a number" not in text
    assert f"postgresql://{secret_role}:***@127.0.0.1:{pg_server.port}/" in text
    assert_absent(result.stdout, password, "Traceback")


@pytest.mark.parametrize("command", ["verify", "check --json"])
def test_a_missing_root_certificate_file_is_named(secret_env, pg_server, command):
    if not pg_server.tls:
        pytest.skip("this PostgreSQL build (LOCAL_PG_BIN_DIR) has no SSL support")
    url = secret_env["DATABASE_URL"] + "?sslmode=verify-full&sslrootcert=/nope/ca.crt"
    result = cli(*command.split(), env=with_url(secret_env, url))
    assert result.returncode == 2, result.stdout
    assert (
        "the root certificate file /nope/ca.crt named by sslrootcert in DATABASE_URL does not exist"
    ) in result.stdout
    assert "Fix: set sslrootcert in DATABASE_URL to the path of the CA certificate" in (
        result.stdout
    )
    assert "check the user and database name" not in result.stdout
    assert_clean(result.stdout)


@pytest.mark.parametrize("command", ["verify", "check --json"])
def test_a_key_value_string_is_refused_with_its_password_masked(harness_env, command):
    conninfo = f"host=127.0.0.1 user=secretive password='{PASSWORD} x' dbname=app"
    result = cli(*command.split(), env=with_url(harness_env, conninfo))
    assert result.returncode == 2, result.stdout
    assert "DATABASE_URL is not a URL: host=127.0.0.1 user=secretive password=*** dbname=app" in (
        shown(result, command)
    )
    assert_clean(result.stdout)
