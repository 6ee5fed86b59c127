"""The health routes, the metrics and the dashboard, with FastAPI's test client against the
real local pair (PostgreSQL direct, PgBouncer in transaction mode with TLS)."""

from __future__ import annotations

import json
import os
import re
import socket
import sys
import time
from urllib.parse import unquote, urlsplit

import psycopg
from fastapi import FastAPI
from fastapi.testclient import TestClient
from helpers import ROOT, alembic, run
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families
from proxy import FaultProxy
from sqlalchemy import text

from app.db.engines import get_app_engine, reset_engines
from app.web.dashboard import render
from app.web.health import health_router
from app.web.metrics import METRICS, metrics_router, sample_names

HEAD = "f096d6eff8ee"


def client(registry: CollectorRegistry | None = None) -> TestClient:
    app = FastAPI()
    app.include_router(health_router())
    app.include_router(metrics_router(registry=registry or CollectorRegistry()))
    return TestClient(app)


def password_of(url: str) -> str:
    return unquote(urlsplit(url).password or "")


def with_port(url: str, port: int) -> str:
    return re.sub(r"@([^:/]+):\d+/", rf"@\1:{port}/", url, count=1)


def test_healthy_at_head_through_the_pooler(twin_env, pooled_url):
    assert alembic("upgrade", "head", env=twin_env).returncode == 0
    response = client().get("/health/db")
    body = response.json()
    assert response.status_code == 200, body
    assert body["status"] == "ok" and body["reason"] is None
    assert body["endpoint"] == "pooled"
    assert body["ssl_in_use"] is True  # the pooler's client TLS, read from the driver
    assert body["revisions"] == [HEAD] and body["heads"] == [HEAD]
    assert body["revision_state"] == "at_head"
    assert 0 < body["latency_ms"] < body["timeout_s"] * 1000
    assert response.headers["cache-control"] == "no-store"
    assert password_of(pooled_url) not in response.text


def test_behind_head_is_unhealthy_with_the_fix(twin_env):
    response = client().get("/health/db")
    body = response.json()
    assert response.status_code == 503
    assert body["revision_state"] == "behind" and body["revisions"] == []
    assert body["reason"] == (
        f"the database is at no revision (empty database), behind this code's head {HEAD}: "
        "run the migrations (make migrate) before this code serves"
    )


def test_ahead_of_the_code_is_healthy_as_in_a_rolling_deploy(twin_env, db_url):
    assert alembic("upgrade", "head", env=twin_env).returncode == 0
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("UPDATE alembic_version SET version_num = 'from_a_newer_build'")
    response = client().get("/health/db")
    assert response.status_code == 200
    assert response.json()["revision_state"] == "ahead"


def test_refused_connection_is_503_with_one_line_and_no_password(twin_env, monkeypatch):
    proxy = FaultProxy(1)  # its port, then nobody listening there
    proxy.close()
    url = with_port(twin_env["DATABASE_URL"], proxy.port)
    monkeypatch.setenv("DATABASE_URL", url)
    reset_engines()
    started = time.monotonic()
    response = client().get("/health/db")
    elapsed = time.monotonic() - started
    body = response.json()
    assert response.status_code == 503 and body["status"] == "unhealthy"
    assert body["reason"].startswith(f"cannot connect to 127.0.0.1:{proxy.port}")
    assert "\n" not in body["reason"] and password_of(url) not in response.text
    assert elapsed < 2  # no retrying for a health probe


def test_a_bad_setting_is_503_with_the_variable_named(twin_env, monkeypatch):
    monkeypatch.setenv("DATABASE_URL", "postgresql://app:hunter2@/nohost")
    monkeypatch.setenv("DB_HEALTH_TIMEOUT", "1")
    reset_engines()
    response = client().get("/health/db")
    assert response.status_code == 503
    assert "DATABASE_URL" in response.json()["reason"] and "hunter2" not in response.text


def test_a_silent_database_is_503_within_the_timeout(twin_env, monkeypatch):
    """A listener that accepts and never answers: libpq alone would wait 2 s at least."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        monkeypatch.setenv(
            "DATABASE_URL", with_port(twin_env["DATABASE_URL"], silent.getsockname()[1])
        )
        monkeypatch.setenv("DB_HEALTH_TIMEOUT", "0.5")
        reset_engines()
        started = time.monotonic()
        response = client().get("/health/db")
        elapsed = time.monotonic() - started
    assert response.status_code == 503
    assert response.json()["reason"].startswith(
        "the pooled endpoint did not answer within 0.5 s (stuck connecting)"
    )
    assert 0.5 <= elapsed < 1.5


def test_pool_route_reports_the_app_pool(twin_env):
    with get_app_engine().connect() as conn:
        conn.execute(text("SELECT 1"))
    response = client().get("/health/db/pool")
    assert response.status_code == 200
    pools = {pool["name"]: pool for pool in response.json()["pools"]}
    app = pools["app"]
    assert app["checkouts"] == 1 and app["checked_in"] == 1 and app["checked_out"] == 0
    assert app["pool_class"] == "QueuePool" and app["limit"] == 15


def scrape(test_client: TestClient) -> dict[str, float]:
    response = test_client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    return {
        sample.name + json.dumps(sample.labels, sort_keys=True): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def exported_names(samples: dict[str, float]) -> set[str]:
    return {key.split("{", 1)[0] for key in samples}


def test_metrics_export_every_figure_under_prometheus_names(twin_env):
    assert alembic("upgrade", "head", env=twin_env).returncode == 0
    test_client = client()
    with get_app_engine().connect() as conn:
        conn.execute(text("SELECT 1"))
    assert test_client.get("/health/db").status_code == 200
    samples = scrape(test_client)
    app = '{"pool": "app"}'
    assert samples["db_pool_checkouts_total" + app] == 1
    assert samples["db_pool_checked_in_connections" + app] == 1
    assert samples["db_pool_size" + app] == 5 and samples["db_pool_max_overflow" + app] == 10
    assert samples["db_pool_checkout_wait_seconds_count" + app] == 1
    assert samples['db_pool_checkout_wait_seconds_bucket{"le": "+Inf", "pool": "app"}'] == 1
    assert samples["db_health_up{}"] == 1 and 0 < samples["db_health_latency_seconds{}"] < 2
    expected = {name for metric in METRICS for name in sample_names(metric)}
    assert exported_names(samples) == expected


def test_dashboard_queries_name_exactly_the_exported_metrics(twin_env):
    test_client = client()
    with get_app_engine().connect() as conn:
        conn.execute(text("SELECT 1"))
    test_client.get("/health/db")
    exported = exported_names(scrape(test_client))
    dashboard = json.loads(render())
    used = set()
    for panel in dashboard["panels"]:
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            names = set(re.findall(r"\b(db_[a-z_]+)\b", target["expr"]))
            assert names, target["expr"]
            assert names <= exported, f"{panel['title']}: {names - exported} not exported"
            used |= names
    variable_query = dashboard["templating"]["list"][1]["query"]
    assert set(re.findall(r"\b(db_[a-z_]+)\b", variable_query)) <= exported
    assert {metric.name for metric in METRICS} <= {name.removesuffix("_bucket") for name in used}, (
        "every exported metric has a panel"
    )
    committed = (ROOT / "dashboards" / "database.json").read_text()
    assert committed == render(), "run python scripts/generate_dashboard_config.py"


def test_registering_twice_adds_the_collector_once():
    from app.web.metrics import register

    registry = CollectorRegistry()
    register(registry)
    register(registry)  # a second collector would print every family twice
    assert generate_latest(registry).count(b"# HELP db_pool_size ") == 1
    fresh = CollectorRegistry()  # and a new registry, even at a reused address, gets one
    register(fresh)
    assert generate_latest(fresh).count(b"# HELP db_pool_size ") == 1


def test_generate_dashboard_config_writes_the_file(tmp_path):
    output = tmp_path / "dash.json"
    result = run(
        [sys.executable, str(ROOT / "scripts" / "generate_dashboard_config.py"), "-o", str(output)],
        env={"PATH": os.environ["PATH"]},
    )
    assert result.returncode == 0, result.stdout
    assert json.loads(output.read_text())["uid"] == "neon-db-pool"
    (tmp_path / "file").write_text("")
    blocked = run(
        [sys.executable, str(ROOT / "scripts" / "generate_dashboard_config.py"),
         "-o", str(tmp_path / "file" / "dash.json")],
        env={"PATH": os.environ["PATH"]},
    )  # fmt: skip
    assert blocked.returncode == 2 and "Traceback" not in blocked.stdout
    assert blocked.stdout.startswith("error: cannot write ")
