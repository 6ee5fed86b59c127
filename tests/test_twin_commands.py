"""The twin's commands as another tool uses them: `db-up --env` for the app's own settings
and tests, `serve` from the project's root, and a data folder of another major."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import psycopg
import pytest
from helpers import CLI, ROOT, cli

SCRIPT = Path(sys.executable).parent / "neon-migrate"  # the console script pip installed


def twin_env(harness_env: dict, tmp_path: Path, **more: str) -> dict:
    env = dict(harness_env, LOCAL_DB_DIR=str(tmp_path / "local"), **more)
    env.pop("DATABASE_URL")
    return env


@pytest.mark.slow
def test_db_up_env_prints_exports_a_shell_and_a_driver_can_use(harness_env, tmp_path):
    env = twin_env(harness_env, tmp_path)
    try:
        result = subprocess.run([*CLI, "db-up", "--env"], env=env, capture_output=True,
                                text=True, timeout=300)  # fmt: skip
        assert result.returncode == 0, result.stderr
        names = [line.split("=")[0] for line in result.stdout.splitlines()]
        assert names == ["export DATABASE_URL", "export DATABASE_URL_DIRECT"]
        assert "db-up: local PostgreSQL" in result.stderr  # people read stderr; eval reads stdout
        shell = subprocess.run(
            ["bash", "-c", 'eval "$1"; printf "%s\\n" "$DATABASE_URL" "$DATABASE_URL_DIRECT"',
             "-", result.stdout],
            capture_output=True, text=True, check=True, timeout=30,
        )  # fmt: skip
        pooled, direct = shell.stdout.splitlines()
        password = json.loads((tmp_path / "local" / "pg" / "server.json").read_text())["password"]
        assert password in pooled and password in direct and password not in result.stderr
        pooler = json.loads((tmp_path / "local" / "pgbouncer" / "pooler.json").read_text())
        assert f":{pooler['port']}/" in pooled
        for url in (pooled, direct):
            with psycopg.connect(url) as conn:
                assert conn.execute("SELECT current_database()").fetchone() == ("app",)
                assert conn.pgconn.ssl_in_use
    finally:
        cli("db-down", env=env)


@pytest.mark.parametrize(
    ("setting", "why"),
    [({"CI": "true"}, "this is CI"), ({"APP_ENV": "production"}, "APP_ENV is 'production'")],
    ids=["CI", "production"],
)
def test_db_up_env_is_refused_outside_local_development(harness_env, tmp_path, setting, why):
    result = cli("db-up", "--env", env=twin_env(harness_env, tmp_path, **setting))
    assert result.returncode == 2, result.stdout
    assert result.stdout.splitlines() == [result.stdout.strip()], "one line"
    assert f"error: db-up --env prints the local twin's password, and {why}" in result.stdout
    assert "Fix: use it on a developer's machine only" in result.stdout
    assert not (tmp_path / "local").exists(), "nothing may be started"


@pytest.mark.slow
def test_serve_hands_the_example_app_the_twin_when_no_url_is_set(harness_env, tmp_path):
    """`make serve` on a fresh clone: the app imports no twin code, so the command line
    starts the twin and hands the app its URLs; the app's health route then reaches it."""
    env = twin_env(harness_env, tmp_path, PYTHONPATH=str(ROOT))
    env.pop("DATABASE_URL_DIRECT", None)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen([*CLI, "serve", "app.main:app", "--port", str(port)], env=env,
                              cwd=ROOT, text=True, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT)  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health/db", timeout=10):
                    pass
                raise AssertionError("a fresh twin's database is behind this code's head")
            except urllib.error.HTTPError as answer:  # 503: behind head, so it was reached
                body = json.loads(answer.read())
                break
            except OSError:
                assert server.poll() is None, server.communicate()[0]
                assert time.monotonic() < deadline
                time.sleep(0.2)
    finally:
        server.terminate()
        output = server.communicate(timeout=30)[0]
        cli("db-down", env=env)
    assert body["host"].startswith("127.0.0.1:"), body
    assert "behind" in str(body["reason"]), body
    assert "serve: local PostgreSQL" in output and "started at 127.0.0.1" in output, output
    assert "DATABASE_URL is not set" not in output and "Traceback" not in output, output


def test_serve_finds_the_app_from_the_project_root_without_pythonpath(harness_env, tmp_path):
    """The `neon-migrate` script (not `python -m`), PYTHONPATH unset: uvicorn must import
    the project's own package from the folder it runs in."""
    root = tmp_path / "project"
    (root / "shop").mkdir(parents=True)
    (root / "shop" / "__init__.py").write_text("")
    (root / "shop" / "web.py").write_text(
        "async def app(scope, receive, send):\n"
        "    if scope['type'] != 'http':\n"
        "        return\n"
        "    await send({'type': 'http.response.start', 'status': 200, 'headers': []})\n"
        "    await send({'type': 'http.response.body', 'body': b'shop is up'})\n"
    )
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {k: v for k, v in harness_env.items() if k != "PYTHONPATH"}
    server = subprocess.Popen([str(SCRIPT), "serve", "shop.web:app", "--port", str(port)],
                              env=env, cwd=root, text=True, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT)  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as r:
                    assert r.read() == b"shop is up"
                    break
            except OSError:
                assert server.poll() is None, server.communicate()[0]
                assert time.monotonic() < deadline
                time.sleep(0.2)
    finally:
        server.terminate()
        output = server.communicate(timeout=30)[0]
    assert "No module named" not in output and "Traceback" not in output


@pytest.mark.slow
def test_a_data_folder_of_another_major_exits_2_with_a_command_init_projects_have(
    harness_env, tmp_path
):
    env = twin_env(harness_env, tmp_path)
    assert cli("db-up", env=env).returncode == 0
    assert cli("db-down", env=env).returncode == 0
    version_file = tmp_path / "local" / "pg" / "data" / "PG_VERSION"
    version_file.write_text("18\n")
    try:
        result = cli("migrate", env=env)
    finally:
        cli("db-down", env=env)
    error = result.stdout.strip().splitlines()[-1]
    assert result.returncode == 2, result.stdout
    assert "was created by PostgreSQL 18, and the local server is now PostgreSQL" in error
    assert f"Fix: `neon-migrate db-down`, then delete {tmp_path / 'local' / 'pg'}" in error
    assert "LOCAL_PG_BIN_DIR to a PostgreSQL 18 bin folder" in error
    mk = (Path(__file__).parents[1] / "neon_migrate" / "templates" / "neon-migrate.mk").read_text()
    assert "db-down:" in mk and "make clean" not in error  # init's Makefile has db-down
