"""The example application (app/main.py) against the real local pair, through PgBouncer:
its CRUD routes, its metrics from boot, a COMMIT that fails, and starting it with no URL."""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import sys
import time
import urllib.request
from typing import Annotated

import psycopg
import pytest
from fastapi import Depends, FastAPI
from fastapi.testclient import TestClient
from helpers import ROOT, rows, run
from prometheus_client.parser import text_string_to_metric_families
from sqlmodel import Session

from app.models import Project
from neon_migrate.connection.session import get_session
from neon_migrate.observe.pool_stats import all_stats
from neon_migrate.web.session import SessionDep, unscoped_session_routes, warn_unscoped_sessions


@pytest.fixture
def migrated(twin_env, db_at_head):
    return twin_env


@pytest.fixture
def example(twin_env) -> FastAPI:
    """app.main's app, imported once the environment points at this test's database."""
    from app.main import app

    return app


def test_create_and_read_through_the_crud_routes(migrated, example, db_url):
    with TestClient(example) as client:
        created = client.post("/accounts", json={"email": "a@example.com", "display_name": "A"})
        assert created.status_code == 201, created.text
        account = created.json()
        assert account["id"] > 0 and account["created_at"]  # from INSERT … RETURNING
        assert client.get(f"/accounts/{account['id']}").json() == account
        again = client.post("/accounts", json={"email": "a@example.com", "display_name": "B"})
        assert again.status_code == 409

        projects = f"/accounts/{account['id']}/projects"
        made = client.post(projects, json={"name": "site", "description": "the website"})
        assert made.status_code == 201, made.text
        project = made.json()
        assert project["account_id"] == account["id"] and project["updated_at"]
        assert client.post(projects, json={"name": "site"}).status_code == 409
        assert client.get(projects).json() == [project]

        assert client.get("/accounts/424242").status_code == 404
        assert client.post("/accounts/424242/projects", json={"name": "x"}).status_code == 404
        assert client.get("/health/db").json()["revision_state"] == "at_head"
        assert "/metrics" in client.get("/openapi.json").json()["paths"]  # /docs works
    # committed, as another session sees
    assert rows(db_url, "SELECT email FROM account") == [("a@example.com",)]
    assert rows(db_url, "SELECT name, description FROM project") == [("site", "the website")]


def test_metrics_have_the_app_pool_before_any_request(twin_env, example):
    assert "app" not in {stats.name for stats in all_stats()}  # nothing built it yet
    with TestClient(example) as client:  # runs the lifespan, as uvicorn does at boot
        text = client.get("/metrics").text
    samples = {
        sample.name: sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.labels.get("pool") == "app"
    }
    assert samples["db_pool_size"] == 5
    assert samples["db_pool_checkouts_total"] == 0  # no request has touched the database
    assert samples["db_pool_checkout_wait_seconds_count"] == 0


# --- a COMMIT that fails: the client must hear about it ---------------------------------


def orphan_project(session: Session) -> dict:
    session.add(Project(account_id=424242, name="orphan"))
    session.flush()  # the INSERT goes through: the foreign key is checked at COMMIT
    return {"saved": True}


def commit_pitfall_app() -> FastAPI:
    api = FastAPI()

    @api.post("/plain")
    def plain(session: Annotated[Session, Depends(get_session)]) -> dict:  # the mistake
        return orphan_project(session)

    @api.post("/scoped")
    def scoped(session: SessionDep) -> dict:
        return orphan_project(session)

    return api


def test_a_failed_commit_is_a_500_with_sessiondep_and_a_lost_200_without(migrated, db_url):
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute(
            "ALTER TABLE project ALTER CONSTRAINT fk_project_account_id_account "
            "DEFERRABLE INITIALLY DEFERRED"
        )
    client = TestClient(commit_pitfall_app(), raise_server_exceptions=False)

    plain = client.post("/plain")  # the documented pitfall: COMMIT after the response
    assert plain.status_code == 200 and plain.json() == {"saved": True}
    assert rows(db_url, "SELECT count(*) FROM project") == [(0,)]  # the write was lost

    scoped = client.post("/scoped")  # COMMIT before the response: the client is told
    assert scoped.status_code == 500
    assert rows(db_url, "SELECT count(*) FROM project") == [(0,)]


def test_the_example_app_reports_a_failed_commit(migrated, example, db_url):
    """A uniqueness checked at COMMIT: the second identical project passes the INSERT and
    the route's own 409 check, and fails at COMMIT, which the client must see."""
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("DROP INDEX ix_project_account_id_name")
        conn.execute(
            "ALTER TABLE project ADD CONSTRAINT uq_project_account_id_name "
            "UNIQUE (account_id, name) DEFERRABLE INITIALLY DEFERRED"
        )
    with TestClient(example, raise_server_exceptions=False) as client:
        account = client.post("/accounts", json={"email": "c@example.com", "display_name": "C"})
        projects = f"/accounts/{account.json()['id']}/projects"
        assert client.post(projects, json={"name": "twice"}).status_code == 201
        assert client.post(projects, json={"name": "twice"}).status_code == 500
    assert rows(db_url, "SELECT name FROM project") == [("twice",)]


def test_routes_taking_get_session_unscoped_are_named_at_startup(caplog):
    assert unscoped_session_routes(commit_pitfall_app()) == ["POST /plain"]
    with caplog.at_level(logging.WARNING, logger="neon_migrate.web"):
        warn_unscoped_sessions(commit_pitfall_app())
    assert "POST /plain uses Depends(get_session) without scope" in caplog.text
    from app.main import app

    assert unscoped_session_routes(app) == []  # the example shows the right way


# --- starting it ---------------------------------------------------------------------------


def test_no_url_and_no_twin_stops_uvicorn_with_one_line(harness_env, tmp_path):
    """Local development with nothing configured, run by uvicorn itself: the app starts
    no server of its own (it imports no twin), and uvicorn exits with the harness's line,
    not a traceback."""
    env = {k: v for k, v in harness_env.items() if not k.startswith("DATABASE_URL")}
    local = tmp_path / "no-twin-here"
    env |= {"LOCAL_DB_DIR": str(local), "PYTHONPATH": str(ROOT)}
    result = run(
        [sys.executable, "-m", "uvicorn", "app.main:app", "--port", "0"], env, cwd=ROOT, timeout=60
    )
    assert result.returncode == 3, result.stdout  # uvicorn: startup failed
    assert "Waiting for application startup." in result.stdout  # imported fine
    assert (
        "error: DATABASE_URL is not set, and only the command line starts or finds the "
        "local twin. Fix: set DATABASE_URL (`neon-migrate db-up --env` prints the twin's), "
        "or run the app with `neon-migrate serve`." in result.stdout
    )
    assert "Traceback" not in result.stdout
    assert not os.path.exists(local)  # nothing was started or created


def test_uvicorn_serves_it_with_the_pool_in_the_metrics_from_boot(migrated):
    """`make serve`: uvicorn app.main:app with DATABASE_URL set (here the pooler)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = dict(migrated, PYTHONPATH=str(ROOT))
    server = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "app.main:app", "--port", str(port)],
        env=env,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
                    metrics = r.read().decode()
                break
            except OSError:
                assert server.poll() is None and time.monotonic() < deadline, "not serving"
                time.sleep(0.1)
        assert 'db_pool_checkouts_total{pool="app"} 0.0' in metrics
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health/db", timeout=5) as r:
            assert r.status == 200
    finally:
        server.terminate()
        output, _ = server.communicate(timeout=30)
    assert "Application startup complete." in output and "Traceback" not in output
