"""The pre-deploy check without a branch never holds production up past its bounds.

A pending revision takes ACCESS EXCLUSIVE on `account`, then works for 15 s. The app reads
`account` through the pooler (PgBouncer) all along; the check rehearses on production in
a rolled-back transaction. Faults come from the TCP proxy in front of the direct endpoint.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time

import psycopg
import pytest
from helpers import ROOT, WAITING_FOR_OUR_LOCK, add_revision, alembic, ends_within
from proxy import FaultProxy

HEAD = "f096d6eff8ee"
SCRIPT = str(ROOT / "scripts" / "predeploy_check.py")
SLOW = ("ALTER TABLE account ADD COLUMN nickname text", "SELECT pg_sleep(15)")


class App(threading.Thread):
    """The app: `SELECT count(*) FROM account` in a loop through the pooler; the longest
    one is how long the check held it up."""

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        self.url, self.worst, self.errors = url, 0.0, []
        self.stop = threading.Event()

    def run(self) -> None:
        with psycopg.connect(self.url, autocommit=True, prepare_threshold=None) as conn:
            while not self.stop.is_set():
                started = time.monotonic()
                try:
                    conn.execute("SELECT count(*) FROM account").fetchone()
                except psycopg.Error as exc:
                    self.errors.append(str(exc))
                self.worst = max(self.worst, time.monotonic() - started)
                time.sleep(0.02)

    def __enter__(self) -> App:
        self.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop.set()
        self.join(timeout=30)


def check(env: dict, *args: str, timeout: float = 120) -> tuple[int, dict, float]:
    started = time.monotonic()
    result = subprocess.run([sys.executable, SCRIPT, "--json", *args], env=env,
                            capture_output=True, text=True, timeout=timeout)  # fmt: skip
    took = time.monotonic() - started
    assert "Traceback" not in result.stderr, result.stderr
    return result.returncode, json.loads(result.stdout), took


def rehearsal(report: dict) -> dict:
    return next(c for c in report["checks"] if c["id"] == "rehearsal")


@pytest.fixture
def pooled_project(project, pooled_url, db_url, db_at_head):
    """A project at head, with rows, seen by the app through PgBouncer; no Neon API, so
    the check rehearses on production."""
    env = dict(project["env"], DATABASE_URL=pooled_url, DATABASE_URL_DIRECT=db_url)
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("INSERT INTO account (email, display_name) SELECT 'u' || g || "
                     "'@example.com', 'U' FROM generate_series(1, 100) g")  # fmt: skip
    return dict(project, env=env, db_url=db_url, pooled_url=pooled_url)


def columns(url: str) -> list[str]:
    with psycopg.connect(url) as conn:
        return [r[0] for r in conn.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_name = 'account'"
        )]  # fmt: skip


@pytest.mark.slow
def test_a_lock_held_past_the_bound_is_cut_and_fails_the_check(pooled_project):
    add_revision(pooled_project, "r2", HEAD, *SLOW)
    with App(pooled_project["pooled_url"]) as app:
        code, report, took = check(pooled_project["env"], "--skip", "lint")
    result = rehearsal(report)
    print(f"app's worst wait {app.worst:.2f} s; check {took:.1f} s")
    assert result["status"] == "fail", result
    assert result["message"].startswith(
        "r2 would hold ACCESS EXCLUSIVE on account for more than 5 s (blocks reads and "
        "writes): stopped on production after 5 s"
    ), result["message"]
    assert result["details"]["cut"] == "r2" and result["details"]["unchanged"] is True
    assert code == 1
    assert 4 < app.worst < 6.5 and not app.errors  # held, and no longer than the bound
    assert "nickname" not in columns(pooled_project["db_url"])


def test_a_lock_held_across_short_statements_is_cut_by_the_guard(pooled_project):
    """No statement is slow, yet the lock lasts: the guard ends the session."""
    add_revision(pooled_project, "r2", HEAD, SLOW[0], *["SELECT pg_sleep(0.6)"] * 6)
    env = dict(pooled_project["env"], CHECK_MAX_LOCK_SECONDS="1.5")
    with App(pooled_project["pooled_url"]) as app:
        code, report, _ = check(env, "--skip", "lint")
    result = rehearsal(report)
    assert result["status"] == "fail", result
    assert "r2 would hold ACCESS EXCLUSIVE on account for more than 1.5 s" in result["message"]
    assert "CHECK_MAX_LOCK_SECONDS" in result["message"]
    assert result["details"]["unchanged"] is True and code == 1
    assert app.worst < 2.5, app.worst
    assert "nickname" not in columns(pooled_project["db_url"])


def test_quick_revisions_still_pass(pooled_project):
    add_revision(pooled_project, "r2", HEAD, SLOW[0], "SELECT pg_sleep(0.2)")
    code, report, _ = check(pooled_project["env"], "--skip", "lint")
    assert rehearsal(report)["status"] == "pass", rehearsal(report)
    assert rehearsal(report)["details"]["cut"] is None and code == 0


def _locks_on_account(url: str) -> int:
    with psycopg.connect(url, autocommit=True) as conn:
        return conn.execute(
            "SELECT count(*) FROM pg_locks WHERE relation = 'account'::regclass "
            "AND mode = 'AccessExclusiveLock' AND granted"
        ).fetchone()[0]


@pytest.mark.slow
def test_a_silent_link_ends_the_check_with_exit_3_and_the_server_lets_go(pooled_project,
                                                                          pg_server):  # fmt: skip
    add_revision(pooled_project, "r2", HEAD, *SLOW)
    db_url = pooled_project["db_url"]
    proxy = FaultProxy(pg_server.port)
    silent_at: list[float] = []
    released_at: list[float] = []

    def go_silent_mid_statement() -> None:
        deadline = time.monotonic() + 60
        with psycopg.connect(db_url, autocommit=True) as conn:
            while time.monotonic() < deadline:
                running = conn.execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE state = 'active' "
                    "AND query LIKE 'SELECT pg_sleep(15)%'"
                ).fetchone()[0]
                if running:
                    time.sleep(0.5)  # well into the statement, its lock held
                    proxy.go_silent()
                    silent_at.append(time.monotonic())
                    break
                time.sleep(0.05)
        while silent_at and time.monotonic() < deadline:
            if not _locks_on_account(db_url):
                released_at.append(time.monotonic())
                return
            time.sleep(0.1)

    watcher = threading.Thread(target=go_silent_mid_statement, daemon=True)
    direct = db_url.replace(f":{pg_server.port}/", f":{proxy.port}/")
    try:
        watcher.start()
        code, report, _ = check(dict(pooled_project["env"], DATABASE_URL_DIRECT=direct),
                                "--skip", "lint", timeout=90)  # fmt: skip
        ended = time.monotonic()
        watcher.join(timeout=60)
    finally:
        proxy.close()
    assert silent_at, "the rehearsal's slow statement never ran"
    print(
        f"silent link: check ended {ended - silent_at[0]:.1f} s after the silence, "
        f"locks released after {released_at[0] - silent_at[0]:.1f} s"
    )
    result = rehearsal(report)
    assert code == 3, report
    assert result["status"] == "fail"
    assert result["message"].startswith("the database stopped answering during the "
                                        "rehearsal of r2"), result["message"]  # fmt: skip
    assert ended - silent_at[0] < 30
    assert released_at and released_at[0] - silent_at[0] < 15
    assert "nickname" not in columns(db_url)


@pytest.mark.slow
def test_a_migrate_started_during_the_check_waits_for_it_within_the_bound(pooled_project):
    """The rehearsal holds the migration lock in its transaction (a migrate must not run
    into its locks), so a deploy started meanwhile waits, for the bound at most."""
    # In the check, r2 holds its lock until the migrate polls for the migration lock (at
    # most 20 s, within the check's bound), then 1 s more: the migrate's start-up, long on
    # a loaded machine, never lets it arrive after the check has ended.
    hold = (f"DO $$BEGIN FOR i IN 1..400 LOOP EXIT WHEN ({WAITING_FOR_OUR_LOCK}) > 0; "
            "PERFORM pg_sleep(0.05); PERFORM pg_stat_clear_snapshot(); END LOOP; "
            "PERFORM pg_sleep(1); END$$")  # fmt: skip
    add_revision(pooled_project, "r2", HEAD, source=(
        f"    import os\n\n    op.execute({SLOW[0]!r})\n"
        f"    if os.environ.get('R2_HOLDS_FOR_A_MIGRATE'):\n        op.execute({hold!r})"
    ))  # fmt: skip
    env = pooled_project["env"]
    command = [sys.executable, SCRIPT, "--json", "--skip", "lint"]
    holding = dict(env, R2_HOLDS_FOR_A_MIGRATE="1", CHECK_MAX_LOCK_SECONDS="30")
    checking = subprocess.Popen(command, env=holding, stdout=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    with psycopg.connect(pooled_project["db_url"], autocommit=True) as conn:
        in_hold = ("SELECT count(*) FROM pg_stat_activity WHERE state = 'active' "
                   "AND query LIKE 'DO $$BEGIN FOR i IN 1..400%'")  # fmt: skip
        while not conn.execute(in_hold).fetchone()[0]:
            assert time.monotonic() < deadline and checking.poll() is None, checking.stdout.read()
            time.sleep(0.05)
    started = time.monotonic()
    migrated = alembic("upgrade", "head", env=env)
    took = time.monotonic() - started
    out, _ = checking.communicate(timeout=60)
    assert rehearsal(json.loads(out))["status"] == "pass", rehearsal(json.loads(out))
    assert migrated.returncode == 0, migrated.stdout
    assert "waiting up to 60s for the migration lock" in migrated.stdout
    ends_within(took, 20 + 1 + 5, "the waiting migrate")  # its start, the hold's 1 s, r2
    assert "nickname" in columns(pooled_project["db_url"])


def test_a_slow_statement_holding_no_blocking_lock_is_cut_and_said(pooled_project):
    add_revision(pooled_project, "r2", HEAD, "SELECT pg_sleep(15)")
    code, report, took = check(dict(pooled_project["env"], CHECK_MAX_LOCK_SECONDS="2"),
                               "--skip", "lint")  # fmt: skip
    result = rehearsal(report)
    assert result["status"] == "warn", result
    assert result["message"].startswith(
        "r2 ran a statement longer than 2 s, holding no lock that blocks the app: stopped on "
        "production after 2 s (CHECK_MAX_LOCK_SECONDS)"
    ), result["message"]
    assert code == 0
    ends_within(took, 12, "the check")


@pytest.mark.slow
def test_a_link_gone_silent_between_statements_lets_the_locks_go_too(pooled_project,
                                                                     pg_server):  # fmt: skip
    """The link goes silent while the revision works in Python between two statements:
    the session sits idle in its transaction, holding ACCESS EXCLUSIVE, until the server
    ends it; the next statement never arrives."""
    add_revision(pooled_project, "r2", HEAD, source=(
        "    op.execute('ALTER TABLE account ADD COLUMN nickname text')\n"
        "    import time\n"
        "    time.sleep(2)\n"
        "    op.execute('SELECT pg_sleep(15)')"))  # fmt: skip
    db_url = pooled_project["db_url"]
    proxy = FaultProxy(pg_server.port)
    times: list[float] = []

    def watch() -> None:
        deadline = time.monotonic() + 60
        with psycopg.connect(db_url, autocommit=True) as conn:
            while time.monotonic() < deadline and not times:
                idle = conn.execute(
                    "SELECT count(*) FROM pg_stat_activity a JOIN pg_locks l ON l.pid = a.pid "
                    "WHERE a.state = 'idle in transaction' AND l.granted "
                    "AND l.relation = 'account'::regclass AND l.mode = 'AccessExclusiveLock'"
                ).fetchone()[0]
                if idle:
                    proxy.go_silent()
                    times.append(time.monotonic())
                time.sleep(0.02)
        while times and time.monotonic() < deadline and _locks_on_account(db_url):
            time.sleep(0.1)
        times.append(time.monotonic())

    watcher = threading.Thread(target=watch, daemon=True)
    direct = db_url.replace(f":{pg_server.port}/", f":{proxy.port}/")
    try:
        watcher.start()
        code, report, took = check(dict(pooled_project["env"], DATABASE_URL_DIRECT=direct),
                                   "--skip", "lint", timeout=90)  # fmt: skip
        watcher.join(timeout=60)
    finally:
        proxy.close()
    assert code == 3, [(c["id"], c["status"], c["message"]) for c in report["checks"]]
    assert len(times) == 2 and times[1] - times[0] < 6, times  # idle 5 s at most, then ended
    ends_within(took, 30, "the check")
    assert "nickname" not in columns(db_url)
