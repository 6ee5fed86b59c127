"""Neon branches: the API client against the local stand-in of Neon's API, on the real twin.

The stand-in serves the test session's PostgreSQL (conftest's `pg_server`); its default
branch is a database this module fills; branches are real copies of it. Fault injection
(423, failed operations, failing deletes) is the stand-in's own hook, not Neon's.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace

import httpx
import psycopg2
import pytest
from helpers import ROOT, expires_in, standin_server

from neon_migrate.branches.api import NeonApi, NeonApiError
from neon_migrate.connection.urls import mask
from neon_migrate.errors import ConfigError, UnreachableError
from neon_migrate.twin.local import bundled_bin_dir
from neon_migrate.twin.standin import standin_status, start_standin, stop_standin

PARENT = "branches_parent"
ROWS = [(1, "one"), (2, "two"), (3, "three")]


@contextlib.contextmanager
def _admin(pg_server, dbname: str = "postgres"):
    """An autocommit cursor (psycopg2's `with conn` would open a transaction)."""
    conn = psycopg2.connect(pg_server.url(dbname))
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            yield cur
    finally:
        conn.close()


def _databases(pg_server) -> set[str]:
    with _admin(pg_server) as cur:
        cur.execute("SELECT datname FROM pg_database")
        return {row[0] for row in cur.fetchall()}


def _parent_rows(pg_server) -> list[tuple]:
    conn = psycopg2.connect(pg_server.url(PARENT))
    with conn.cursor() as cur:
        cur.execute("SELECT id, name FROM items ORDER BY id")
        rows = cur.fetchall()
    conn.close()
    return rows


def _server(pg_server, database: str = PARENT):
    return standin_server(pg_server, database)


def _bin_dir() -> Path:
    return (
        Path(os.environ["LOCAL_PG_BIN_DIR"])
        if os.environ.get("LOCAL_PG_BIN_DIR")
        else (bundled_bin_dir())
    )


@pytest.fixture(scope="module")
def standin(pg_server, tmp_path_factory):
    """A stand-in whose default branch is PARENT: a table with rows and database-level
    settings (which neither CREATE DATABASE … TEMPLATE nor pg_dump copy by themselves)."""
    with _admin(pg_server) as cur:
        cur.execute(f"DROP DATABASE IF EXISTS {PARENT} WITH (FORCE)")
        cur.execute(f"CREATE DATABASE {PARENT}")
        cur.execute(f"ALTER DATABASE {PARENT} SET statement_timeout = '7s'")
        cur.execute(f'ALTER DATABASE {PARENT} SET search_path = "$user", public, extra')
    with psycopg2.connect(pg_server.url(PARENT)) as conn, conn.cursor() as cur:
        cur.execute("CREATE TABLE items (id int PRIMARY KEY, name text NOT NULL)")
        cur.executemany("INSERT INTO items VALUES (%s, %s)", ROWS)
    conn.close()
    root = tmp_path_factory.mktemp("standin")
    info = start_standin(
        root, _server(pg_server), _bin_dir(), pooler_port=pg_server.pooler_port, reap_interval_s=0.3
    )
    try:
        yield SimpleNamespace(info=info, root=root, pg=pg_server)
    finally:
        stop_standin(root)
        with _admin(pg_server) as cur:
            for name in _databases(pg_server):
                if name == PARENT or name.startswith(f"{PARENT}__"):
                    cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _api(standin, **options) -> NeonApi:
    i = standin.info
    return NeonApi(i.base_url, i.api_key, i.project_id, **options)


def _faults(standin, **body) -> dict:
    i = standin.info
    answer = httpx.post(
        f"{i.base_url}/_standin/faults", json=body, headers={"Authorization": f"Bearer {i.api_key}"}
    )
    answer.raise_for_status()
    return answer.json()


def _parent_branch(api: NeonApi) -> str:
    found = api.endpoint_for_host("127.0.0.1")
    assert found is not None
    return found[1]


def _copied_by(standin, branch_id: str) -> str:
    text = standin.info.log_file.read_text()
    found = re.search(rf"branch {branch_id}: copied .* by (\w+)", text)
    assert found, text[-2000:]
    return found.group(1)


def _rehearse(standin, api: NeonApi, name: str) -> tuple:
    """Create, wait, connect: (branch, uri, seconds to create+wait)."""
    started = time.monotonic()
    branch = api.create_branch(_parent_branch(api), name, expires_in(3600))
    api.wait_for_operations(branch.operation_ids, 60)
    waited = time.monotonic() - started
    uri = api.connection_uri(branch.branch_id, branch.endpoint_id, PARENT, standin.pg.user)
    return branch, uri, waited


def test_a_branch_is_a_real_copy_and_writing_to_it_leaves_the_parent_alone(standin):
    with _api(standin) as api:
        branch, uri, created = _rehearse(standin, api, "rehearsal-template")
        assert branch.host.endswith(".twin.invalid") and branch.parent_id
        assert re.fullmatch(
            r"postgresql://\S+:\*\*\*@127\.0\.0\.1:\d+/\S+", mask(uri).split("?")[0]
        )
        conn = psycopg2.connect(uri)
        with conn, conn.cursor() as cur:
            cur.execute("SELECT id, name FROM items ORDER BY id")
            assert cur.fetchall() == ROWS
            cur.execute("SHOW statement_timeout")  # database settings came along
            assert cur.fetchone()[0] == "7s"
            cur.execute("SHOW search_path")
            assert cur.fetchone()[0] == '"$user", public, extra'
            cur.execute("INSERT INTO items VALUES (4, 'four')")
            cur.execute("ALTER TABLE items ADD COLUMN rehearsed bool")
        conn.close()
        assert _parent_rows(standin.pg) == ROWS
        assert _copied_by(standin, branch.branch_id) == "template"
        listed = {b["id"]: b for b in api.branches()}
        assert listed[branch.branch_id]["parent_id"] == branch.parent_id
        assert listed[branch.branch_id]["expires_at"] == branch.expires_at
        if standin.pg.pooler_port:  # pooled=true: the twin's PgBouncer, to the same copy
            pooled = api.connection_uri(
                branch.branch_id, branch.endpoint_id, PARENT, standin.pg.user, pooled=True
            )
            assert f":{standin.pg.pooler_port}/" in pooled
            with psycopg2.connect(pooled) as conn, conn.cursor() as cur:
                cur.execute("SELECT count(*) FROM items")
                assert cur.fetchone()[0] == 4
            conn.close()
        database = uri.split("/")[-1].split("?")[0]
        assert database in _databases(standin.pg)
        started = time.monotonic()
        assert api.delete_branch(branch.branch_id) is True
        deleted = time.monotonic() - started
        assert database not in _databases(standin.pg)
        assert branch.branch_id not in {b["id"] for b in api.branches()}
        assert api.delete_branch(branch.branch_id) is False  # already gone: 404
    print(f"\nbranch by TEMPLATE: create+wait {created:.2f} s, delete {deleted:.2f} s")


def test_a_session_on_the_parent_makes_the_copy_a_dump_and_restore(standin):
    holder = psycopg2.connect(standin.pg.url(PARENT))  # CREATE DATABASE … TEMPLATE refuses
    try:
        with _api(standin) as api:
            branch, uri, created = _rehearse(standin, api, "rehearsal-dump")
            conn = psycopg2.connect(uri)
            with conn, conn.cursor() as cur:
                cur.execute("SELECT id, name FROM items ORDER BY id")
                assert cur.fetchall() == ROWS
                cur.execute("SHOW statement_timeout")
                assert cur.fetchone()[0] == "7s"
                cur.execute("DELETE FROM items")
            conn.close()
            assert _parent_rows(standin.pg) == ROWS
            assert _copied_by(standin, branch.branch_id) == "pg_dump"
            started = time.monotonic()
            assert api.delete_branch(branch.branch_id) is True
            deleted = time.monotonic() - started
    finally:
        holder.close()
    print(f"\nbranch by pg_dump | pg_restore: create+wait {created:.2f} s, delete {deleted:.2f} s")


def test_the_parent_branch_is_found_by_the_direct_urls_host(standin):
    with _api(standin) as api:
        found = api.endpoint_for_host("127.0.0.1")
        assert found is not None
        endpoint_id, branch_id = found
        default = [b for b in api.branches() if b["default"]]
        assert [b["id"] for b in default] == [branch_id]
        assert {e["id"]: e["branch_id"] for e in api.endpoints()}[endpoint_id] == branch_id
        assert api.endpoint_for_host("ep-nowhere-123.us-east-2.aws.neon.tech") is None


def test_423_twice_then_the_branch_is_created(standin):
    _faults(standin, locked=2)
    with _api(standin) as api:
        branch = api.create_branch(_parent_branch(api), "after-423", expires_in(600))
        api.wait_for_operations(branch.operation_ids, 60)
        state = _faults(standin)
        assert state["faults"]["locked"] == 0 and state["served"]["locked"] == 2
        assert api.delete_branch(branch.branch_id)


def test_a_project_locked_for_longer_than_the_budget_is_a_clear_error(standin):
    _faults(standin, locked=1000)
    try:
        with _api(standin, retry_total_s=1.0) as api:
            started = time.monotonic()
            with pytest.raises(NeonApiError) as caught:
                api.create_branch(_parent_branch(api), "never", expires_in(600))
            assert time.monotonic() - started < 5
    finally:
        _faults(standin, locked=0)
    err = caught.value
    assert err.status == 423 and "\n" not in str(err)
    assert f"the Neon project {standin.info.project_id} stayed locked" in str(err)


def test_a_failed_operation_is_a_clear_error_naming_it(standin):
    _faults(standin, fail_operation=True)
    with _api(standin) as api:
        branch = api.create_branch(_parent_branch(api), "doomed", expires_in(600))
        with pytest.raises(NeonApiError) as caught:
            api.wait_for_operations(branch.operation_ids, 30, failed_grace_s=0)
        message = str(caught.value)
        assert f"Neon operation {branch.operation_ids[0]} (create_branch) failed" in message
        assert "fault hook" in message and "\n" not in message
        assert api.delete_branch(branch.branch_id) is True  # what the caller cleans up


def test_a_failing_delete_is_surfaced_not_hidden(standin):
    with _api(standin, retry_total_s=1.0) as api:
        branch = api.create_branch(_parent_branch(api), "sticky", expires_in(600))
        api.wait_for_operations(branch.operation_ids, 60)
        _faults(standin, fail_delete=True)  # every DELETE answers 500
        try:
            with pytest.raises(UnreachableError) as caught:
                api.delete_branch(branch.branch_id)
        finally:
            _faults(standin, fail_delete=0)
        assert "HTTP 500" in str(caught.value) and "fail_delete" in str(caught.value)
        assert branch.branch_id in {b["id"] for b in api.branches()}
        _faults(standin, fail_delete=1)  # one transient 500: a DELETE may be repeated
        assert api.delete_branch(branch.branch_id) is True
        assert _faults(standin)["faults"]["fail_delete"] == 0


def test_a_branch_past_expires_at_is_reaped(standin):
    with _api(standin) as api:
        branch = api.create_branch(_parent_branch(api), "short-lived", expires_in(2))
        api.wait_for_operations(branch.operation_ids, 60)
        assert branch.branch_id in {b["id"] for b in api.branches()}
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if branch.branch_id not in {b["id"] for b in api.branches()}:
                break
            time.sleep(0.2)
        else:
            pytest.fail("the expired branch was not deleted")
        assert not any(branch.branch_id in name for name in _databases(standin.pg))


def test_expires_at_is_checked_as_neon_checks_it(standin):
    with _api(standin) as api:
        parent = _parent_branch(api)
        with pytest.raises(NeonApiError, match="at most 30 days") as caught:
            api.create_branch(parent, "too-late", datetime.now(UTC) + timedelta(days=31))
        assert caught.value.status == 400
        with pytest.raises(NeonApiError, match="in the future"):
            api.create_branch(parent, "too-early", datetime.now(UTC) - timedelta(minutes=1))
        with pytest.raises(ValueError, match="time zone"):
            api.create_branch(parent, "naive", datetime.now() + timedelta(hours=1))


def test_wrong_key_is_a_one_line_error_and_the_key_is_never_shown(standin, caplog):
    caplog.set_level(logging.DEBUG)
    i = standin.info
    wrong = "napi_" + "x" * 60
    errors = []
    with NeonApi(i.base_url, wrong, i.project_id) as api:
        assert wrong not in repr(api) and wrong not in repr(api._client.headers)
        with pytest.raises(ConfigError) as caught:
            api.branches()
        errors.append(caught.value)
    assert str(caught.value) == (
        "the Neon API refused the key (HTTP 401: authentication required: a valid API key). "
        "Fix: check NEON_API_KEY."
    )
    assert caught.value.exit_code == 2
    with NeonApi(i.base_url, i.api_key, "no-such-project") as api:  # the right key
        with pytest.raises(ConfigError, match="NEON_PROJECT_ID") as caught:
            api.endpoints()
        errors.append(caught.value)
    with _api(standin) as api:
        with pytest.raises(NeonApiError, match="operation not found") as caught:
            api.operation("00000000-0000-0000-0000-000000000000")
        errors.append(caught.value)
    port = _closed_port()
    with NeonApi(
        f"http://127.0.0.1:{port}/api/v2", i.api_key, i.project_id, retry_total_s=0.5
    ) as api:
        with pytest.raises(UnreachableError) as caught:
            api.branches()
        errors.append(caught.value)
    assert caught.value.exit_code == 3
    for err in errors:
        for shown in (str(err), repr(err), err.cause, err.fix):
            assert i.api_key not in shown and wrong not in shown
        assert "\n" not in str(err)
    assert i.api_key not in caplog.text and wrong not in caplog.text
    assert "Authorization" not in caplog.text


def test_requests_without_the_token_are_refused_with_neons_error_shape(standin):
    i = standin.info
    for headers in ({}, {"Authorization": "Bearer nope"}, {"Authorization": i.api_key}):
        answer = httpx.get(f"{i.base_url}/projects/{i.project_id}/branches", headers=headers)
        assert answer.status_code == 401
        assert set(answer.json()) >= {"code", "message"}


def test_retries_follow_neons_reference(monkeypatch):
    """423/429/503 are retried for every method; other 5xx and lost answers only when
    repeating cannot create a second branch (never for POST)."""
    monkeypatch.setattr("neon_migrate.branches.retries.random.uniform", lambda a, b: a / 5)
    script: list = []
    seen: list[str] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request.method)
        step = script.pop(0)
        if isinstance(step, Exception):
            raise step
        return httpx.Response(
            step,
            json={
                "branches": [],
                "code": "",
                "message": f"s{step}",
                "branch": {"id": "br-1", "name": "x"},
                "endpoints": [{"id": "ep-1", "type": "read_write", "host": "ep-1.x"}],
            },
        )

    def api(budget: float = 5.0) -> NeonApi:
        return NeonApi(
            "https://console.neon.tech/api/v2",
            "k" * 20,
            "p-1",
            retry_total_s=budget,
            transport=httpx.MockTransport(answer),
        )

    script[:] = [502, 504, 200]
    assert api().branches() == []
    script[:] = [503, 423, 429, 201]
    assert api().create_branch("br-0", "x").branch_id == "br-1"
    script[:] = [502, 200, 502, 200]  # each lost creation: is it there? (no branch: no)
    seen.clear()
    with pytest.raises(UnreachableError, match="HTTP 502"):
        api().create_branch("br-0", "x")
    assert seen == ["POST", "GET", "POST", "GET"]  # repeated once only, never blindly
    script[:] = [httpx.ReadTimeout("timed out"), 200] * 2
    with pytest.raises(UnreachableError, match="may have been created anyway"):
        api().create_branch("br-0", "x")
    script[:] = [httpx.ConnectError("refused"), 201]  # never sent: safe to repeat
    assert api().create_branch("br-0", "x").endpoint_id == "ep-1"
    script[:] = [httpx.ReadTimeout("timed out"), 200]
    assert api().branches() == []
    script[:] = [404]
    assert api().delete_branch("br-1") is False
    script[:] = [403]
    with pytest.raises(ConfigError, match="NEON_API_KEY and NEON_PROJECT_ID"):
        api().branches()
    script[:] = [503] * 50
    with pytest.raises(UnreachableError, match="HTTP 503"):
        api(budget=0.3).branches()


def test_unsafe_configuration_is_refused_before_any_request():
    with pytest.raises(ConfigError, match="plain http"):
        NeonApi("http://api.example.com/api/v2", "k" * 20, "p-1")
    with pytest.raises(ConfigError, match="credentials") as caught:
        NeonApi("https://user:secret@console.neon.tech/api/v2", "k" * 20, "p-1")
    assert "secret" not in str(caught.value)
    with pytest.raises(ConfigError, match="NEON_API_KEY is not set"):
        NeonApi("", "", "p-1")
    with pytest.raises(ConfigError, match="NEON_API_KEY has characters") as caught:
        NeonApi("", "abc def\n", "p-1")
    assert "abc" not in str(caught.value)
    with pytest.raises(ConfigError, match="NEON_PROJECT_ID is not set"):
        NeonApi("", "k" * 20, " ")
    from pydantic import SecretStr

    with NeonApi("", SecretStr("s" * 24), "p-1") as api:  # as settings keep the key
        assert api.base_url == "https://console.neon.tech/api/v2"
        assert "s" * 24 not in repr(api)


CHILD = """
import json, os, sys
from pathlib import Path
from types import SimpleNamespace
from neon_migrate.twin.standin import start_standin
server = SimpleNamespace(**json.loads(os.environ["TEST_STANDIN_SERVER"]))
info = start_standin(Path(sys.argv[1]), server, Path(sys.argv[2]))
print(json.dumps({"port": info.port, "project_id": info.project_id, "started": info.started}))
"""


def test_the_standin_outlives_the_command_that_started_it_and_stops(pg_server, tmp_path):
    server = vars(_server(pg_server, database="postgres"))
    env = dict(os.environ, TEST_STANDIN_SERVER=json.dumps(server), PYTHONPATH=str(ROOT))

    def start() -> dict:
        run = subprocess.run(
            [sys.executable, "-c", CHILD, str(tmp_path), str(_bin_dir())],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert run.returncode == 0, run.stderr
        return json.loads(run.stdout)

    first = start()  # the starting process has exited
    try:
        assert first["started"] is True
        info = standin_status(tmp_path)
        assert info is not None and info.port == first["port"]
        assert (info.key_file.stat().st_mode & 0o777) == 0o600
        with NeonApi(info.base_url, info.api_key, info.project_id) as api:
            assert [b["name"] for b in api.branches()] == ["main"]
        again = start()
        assert again["started"] is False and again["port"] == first["port"]
        pid = json.loads((tmp_path / "neon-api" / "running.json").read_text())["pid"]
    finally:
        assert stop_standin(tmp_path) is True
    assert not _alive(pid)
    assert standin_status(tmp_path) is None
    assert stop_standin(tmp_path) is False
    try:
        third = start()  # a new token, the same project
        assert third["started"] is True and third["project_id"] == first["project_id"]
    finally:
        stop_standin(tmp_path)


@pytest.mark.server
def test_the_twin_starts_reports_and_stops_the_api(tmp_path):
    from neon_migrate.twin.lifecycle import running_twin, start_twin, stop_twin

    twin = start_twin(tmp_path)
    try:
        assert twin.api is not None and twin.api.started
        assert twin.describe()[-1] == (
            f"Neon API stand-in started at http://127.0.0.1:{twin.api.port}/api/v2 "
            f"(project {twin.api.project_id})"
        )
        assert (tmp_path / "neon-api" / ".gitignore").exists()
        again = running_twin(tmp_path)
        assert again is not None and again.api is not None
        assert again.api.port == twin.api.port and not again.api.started
        with NeonApi(twin.api.base_url, twin.api.api_key, twin.api.project_id) as api:
            endpoint = api.endpoint_for_host(twin.server.host)
            assert endpoint is not None
            uri = api.connection_uri(
                endpoint[1], endpoint[0], twin.server.database, twin.server.user
            )
        assert uri.startswith(twin.server.url.split("?")[0])
    finally:
        stop_twin(tmp_path)
    assert standin_status(tmp_path) is None


def _alive(pid: int) -> bool:
    """Whether `pid` runs: gone, or a zombie waiting for init to reap it, is not."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _closed_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
