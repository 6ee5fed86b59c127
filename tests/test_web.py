"""The health routes, the metrics and the dashboard, with FastAPI's test client against the
real local pair (PostgreSQL direct, PgBouncer in transaction mode with TLS)."""

from __future__ import annotations

import contextlib
import json
import os
import re
import socket
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import unquote, urlsplit

import psycopg
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from helpers import ROOT, alembic, ends_within, run
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families
from proxy import FaultProxy
from sqlalchemy import text

from neon_migrate.connection.engines import get_app_engine, reset_engines
from neon_migrate.connection.probe import CANCEL_GRACE
from neon_migrate.web.dashboard import render
from neon_migrate.web.health import health_router
from neon_migrate.web.metrics import METRICS, metrics_router, sample_names

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
    ends_within(elapsed, 2, "the probe")  # no retrying for a health probe


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
    assert 0.5 <= elapsed < 1.5  # unscaled: libpq alone would take 2 s


# --- at most one probe in flight: a stalled database costs no threads and no sessions ---
TIMEOUT = 0.5  # DB_HEALTH_TIMEOUT in these tests: connect_timeout is then libpq's least, 2 s
CONNECT_TIMEOUT = 2
MARGIN = 1.0  # on top of TIMEOUT for a probe's answer: generous on a busy 2-core machine
# A late probe stuck in its query is cancelled and, still silent, cut within this.
CUT_BOUND = CONNECT_TIMEOUT + 1.0


def probe_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("db-health-")]


def wait_until(condition, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def sessions(db_url: str, where: str = "true") -> int:
    """Server sessions on the test database, other than this count's own."""
    with psycopg.connect(db_url, autocommit=True) as conn:
        return conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
            f"AND pid <> pg_backend_pid() AND ({where})"
        ).fetchone()[0]


class Watch:
    """Samples the live db-health-* threads (and, given a URL, the test database's
    sessions) in the background, for their maxima over a stretch of probes."""

    def __init__(self, db_url: str | None = None):
        self.db_url = db_url
        self.threads: list[int] = []
        self.names: set[str] = set()
        self.probes: set[threading.Thread] = set()  # each probe's own thread, once seen
        self.sessions: list[int] = []
        self._stop = threading.Event()
        self._sampler = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.is_set():
            threads = probe_threads()
            self.threads.append(len(threads))
            self.names |= {t.name for t in threads}
            self.probes |= {t for t in threads if not t.name.endswith("-cancel")}
            if self.db_url and len(self.threads) % 5 == 0:
                self.sessions.append(sessions(self.db_url))
            time.sleep(0.01)

    def __enter__(self) -> Watch:
        self._sampler.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._sampler.join()


def probe() -> tuple[int, str | None, float]:
    """One GET /health/db from its own client: status, reason, seconds taken."""
    started = time.monotonic()
    response = client().get("/health/db")
    return response.status_code, response.json()["reason"], time.monotonic() - started


def fire(count: int, spacing: float, workers: int = 4) -> list[tuple[int, str | None, float]]:
    """`count` probes, `spacing` s apart, from `workers` threads: they overlap."""

    start = time.monotonic()

    def spaced(i: int):
        time.sleep(max(0.0, start + i * spacing - time.monotonic()))
        return probe()

    with ThreadPoolExecutor(workers) as pool:
        return list(pool.map(spaced, range(count)))


def quiet() -> None:
    """Let a late probe of an earlier test end: it would count in this one's threads."""
    assert wait_until(lambda: not probe_threads(), CUT_BOUND + MARGIN), probe_threads()


STUCK_QUERY = f"the pooled endpoint did not answer within {TIMEOUT:g} s (stuck in the query)"
STUCK_CONNECTING = f"the pooled endpoint did not answer within {TIMEOUT:g} s (stuck connecting)"
STILL_STUCK = "the pooled endpoint did not answer: the previous probe is still stuck "


@pytest.fixture
def at_head(db_at_head, harness_env, monkeypatch) -> dict[str, str]:
    """This test's database at head, probes given TIMEOUT."""
    monkeypatch.setenv("DB_HEALTH_TIMEOUT", str(TIMEOUT))
    reset_engines()
    quiet()
    return harness_env


@pytest.fixture
def proxied(at_head, db_url, pg_server, monkeypatch):
    """DATABASE_URL through a FaultProxy, in plain TCP so it can see the health query."""
    proxy = FaultProxy(pg_server.port)
    monkeypatch.setenv("DATABASE_URL", with_port(db_url, proxy.port) + "?sslmode=disable")
    reset_engines()
    yield proxy
    proxy.close()


class SwallowingProxy(FaultProxy):
    """The issue's fault: each connection gets through its startup, then from the health
    query on, its traffic is read and dropped both ways (the peers hear nothing), while
    new connections and cancel requests get through."""

    MARKER = b"pg_stat_ssl"  # in the health query

    def __init__(self, *args, **kwargs):
        self.swallowing = True
        self._swallowed: set[socket.socket] = set()  # client sockets gone quiet
        super().__init__(*args, **kwargs)

    def _pump(
        self, source: socket.socket, sink: socket.socket, from_client: bool, _flow: dict
    ) -> None:
        client = source if from_client else sink
        try:
            while chunk := source.recv(65536):
                if from_client and self.swallowing and self.MARKER in chunk:
                    self._swallowed.add(client)
                if client not in self._swallowed:
                    sink.sendall(chunk)
        except OSError:
            pass
        finally:  # a FIN from either side ends both: as FaultProxy does
            for sock in (source, sink):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)


def test_twenty_probes_at_a_database_that_connects_then_says_nothing(
    at_head, db_url, pg_server, monkeypatch
):
    """Before: 20 probes left 20 threads and 21 idle sessions. Now one probe at a time:
    at its deadline its query is cancelled, and (the server never got it) its socket is
    cut, which ends its session; only then may the next probe connect."""
    proxy = SwallowingProxy(pg_server.port)
    try:
        monkeypatch.setenv("DATABASE_URL", with_port(db_url, proxy.port) + "?sslmode=disable")
        reset_engines()
        baseline = sessions(db_url)
        with Watch(db_url) as watch:
            answers = fire(20, spacing=0.2)
        assert max(watch.threads) <= 2, watch.names  # the probe and, once late, its canceller
        # Before: baseline + 20. One probe's session; a cut one's backend may still be
        # exiting as the next probe connects.
        assert max(watch.sessions) <= baseline + 2, watch.sessions
        assert len(watch.probes) <= 1 + 20 * 0.2 / (TIMEOUT + CANCEL_GRACE), len(watch.probes)
        for status, reason, elapsed in answers:
            assert status == 503 and elapsed < TIMEOUT + MARGIN, (reason, elapsed)
            assert reason.startswith((STUCK_QUERY, STILL_STUCK + "in the query")), reason
        assert wait_until(lambda: not probe_threads(), CUT_BOUND + MARGIN), probe_threads()
        assert wait_until(lambda: sessions(db_url) == baseline, 5), sessions(db_url)
        proxy.swallowing = False  # the stall is lifted
        assert probe()[:2] == (200, None)
    finally:
        proxy.close()


def test_twenty_probes_at_a_database_stalled_mid_query(proxied, db_url):
    """The database takes the connection, then the query and everything after it vanish
    (new connections and cancel requests too): before, each probe left a thread blocked
    for good and a session, and the cancel, holding the GIL, froze the process."""
    baseline = sessions(db_url)
    proxied.go_silent(on=b"pg_stat_ssl")  # the health query: from it on, nothing gets by
    with Watch(db_url) as watch:
        answers = fire(20, spacing=0.2)
    assert max(watch.threads) <= 2, watch.names  # the probe and, once late, its canceller
    assert watch.names <= {"db-health-pooled", "db-health-pooled-cancel"}
    assert max(watch.sessions) <= baseline + 1, watch.sessions  # the first probe's only
    for status, reason, elapsed in answers:
        assert status == 503 and elapsed < TIMEOUT + MARGIN, (reason, elapsed)
        assert reason.startswith((STUCK_QUERY, STUCK_CONNECTING, STILL_STUCK)), reason
        assert "\n" not in reason
    reasons = [reason for _, reason, _ in answers]
    assert reasons[0].startswith(STUCK_QUERY)
    assert any(r.startswith(STILL_STUCK + "in the query") for r in reasons), reasons
    # One probe at a time: the first cut after an unanswered cancel, the next ones stuck
    # connecting until connect_timeout.
    assert len(watch.probes) <= 1 + 20 * 0.2 / CONNECT_TIMEOUT, len(watch.probes)
    proxied.speak()
    assert wait_until(lambda: not probe_threads(), CUT_BOUND + MARGIN), probe_threads()
    assert wait_until(lambda: sessions(db_url) == baseline, 5), sessions(db_url)
    status, reason, _ = probe()
    assert (status, reason) == (200, None)


def test_twenty_probes_at_a_listener_that_never_answers(at_head, monkeypatch):
    """Stuck connecting: no second probe starts meanwhile, and the late one ends when
    libpq's connect_timeout runs out, closing its socket (the listener sees it close)."""
    accepted: list[float] = []
    closed: list[float] = []  # seconds each connection stayed open
    stop = threading.Event()

    def serve(listener: socket.socket) -> None:
        listener.settimeout(0.02)
        peers: dict[socket.socket, float] = {}
        while True:
            with contextlib.suppress(TimeoutError):
                peer, _ = listener.accept()
                peer.setblocking(False)
                peers[peer] = time.monotonic()
                accepted.append(peers[peer])
            for peer, since in list(peers.items()):
                with contextlib.suppress(BlockingIOError):
                    if peer.recv(65536) == b"":  # closed by the client; never answered
                        closed.append(time.monotonic() - since)
                        peer.close()
                        del peers[peer]
            if stop.is_set():
                break  # one last look after the probes ended

    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(64)
        port = silent.getsockname()[1]
        monkeypatch.setenv("DATABASE_URL", with_port(at_head["DATABASE_URL"], port))
        reset_engines()
        server = threading.Thread(target=serve, args=(silent,), daemon=True)
        server.start()
        with Watch() as watch:
            answers = fire(20, spacing=0.15)
            assert wait_until(lambda: not probe_threads(), CONNECT_TIMEOUT + MARGIN)
        stop.set()
        server.join()
    assert max(watch.threads) <= 1 and watch.names == {"db-health-pooled"}
    for status, reason, elapsed in answers:
        assert status == 503 and elapsed < TIMEOUT + MARGIN, (reason, elapsed)
        assert reason.startswith((STUCK_CONNECTING, STILL_STUCK + "connecting")), reason
    assert 1 <= len(accepted) <= 1 + 20 * 0.15 / CONNECT_TIMEOUT + 1, accepted
    assert len(closed) == len(accepted)  # every late probe closed its socket
    assert all(seconds < CONNECT_TIMEOUT + MARGIN for seconds in closed), closed


def test_a_probe_waiting_on_a_lock_is_cancelled_on_the_server(at_head, db_url):
    """A live server, the query blocked behind a migration's lock: the late probe's query
    is cancelled at its deadline, so it ends at once and leaves no backend waiting."""
    waiting = "application_name = 'app' AND wait_event_type = 'Lock'"
    baseline = sessions(db_url)
    with psycopg.connect(db_url) as blocker:
        blocker.execute("LOCK TABLE alembic_version IN ACCESS EXCLUSIVE MODE")
        with Watch(db_url) as watch:
            for _ in range(5):
                status, reason, elapsed = probe()
                assert status == 503 and reason.startswith(STUCK_QUERY), reason
                assert elapsed < TIMEOUT + MARGIN
                # Cancelled, not cut: over before the cut would come (3 s after the deadline).
                assert wait_until(lambda: not probe_threads(), 2), probe_threads()
                assert sessions(db_url, waiting) == 0
        assert max(watch.sessions) <= baseline + 2  # the blocker, and one probe at a time
    assert probe()[0] == 200
    # the server lists a closed session for a moment longer: wait, on a busy machine
    assert wait_until(lambda: sessions(db_url, "application_name = 'app'") == 0, 5)


def test_probes_arriving_together_share_one_connection(at_head, db_url, pg_server, monkeypatch):
    """A probe in flight and within its deadline is shared, not doubled."""
    proxy = FaultProxy(pg_server.port, delay=0.1)  # each round trip 0.2 s: a slow link
    try:
        monkeypatch.setenv("DATABASE_URL", with_port(db_url, proxy.port) + "?sslmode=disable")
        monkeypatch.setenv("DB_HEALTH_TIMEOUT", "10")
        reset_engines()
        barrier = threading.Barrier(3)

        def together(_):
            barrier.wait()
            return probe()

        with ThreadPoolExecutor(3) as pool:
            answers = list(pool.map(together, range(3)))
    finally:
        proxy.close()
    assert [(status, reason) for status, reason, _ in answers] == [(200, None)] * 3
    assert proxy.connections == 1


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
    from neon_migrate.web.metrics import register

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
