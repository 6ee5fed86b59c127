"""neon-migrate fleet: many databases on one real server, each migrated by its own process.

A fleet here is N databases created beside the test's own on the session's server, each
named by a variable in a targets file, as a CI job would hold them. Faults are real: a
table already there, a port nobody listens on, a SIGTERM sent to the running command.
Wall-clock bounds are generous: the machine is shared.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import psycopg2
import pytest
from helpers import CLI, add_revision, ends_within, rows
from proxy import FaultProxy

HEAD = "f096d6eff8ee"  # the example's one revision: creates account and project


def admin(pg_server):
    conn = psycopg2.connect(pg_server.url("postgres"))
    conn.autocommit = True
    return conn


class Fleet:
    """N fresh databases, their variables, and a targets file naming them."""

    def __init__(self, pg_server, folder: Path, env: dict, count: int, port=None) -> None:
        self.pg = pg_server
        self.folder = folder
        self.prefix = f"fleet_{uuid.uuid4().hex[:8]}"
        self.names = [f"tenant-{i:02d}" for i in range(count)]
        self.databases = [f"{self.prefix}_{i:02d}" for i in range(count)]
        conn = admin(pg_server)
        with conn.cursor() as cur:
            for database in self.databases:
                cur.execute(f'CREATE DATABASE "{database}"')
        conn.close()
        self.env = dict(env)
        for i, database in enumerate(self.databases):
            self.env[self.var(i)] = pg_server.url(database, port=port)
        self.file = self.write()

    @staticmethod
    def var(i: int) -> str:
        return f"FLEET_DB_{i:02d}"

    def url(self, i: int) -> str:
        return self.pg.url(self.databases[i])

    def write(self, extra: str = "", name: str = "fleet.toml") -> Path:
        text = "".join(
            f'[[target]]\nname = "{n}"\nurl_env = "{self.var(i)}"\n\n'
            for i, n in enumerate(self.names)
        )
        path = self.folder / name
        path.write_text(text + extra)
        return path

    def revision(self, i: int) -> tuple[str, ...]:
        exists = rows(self.url(i), "SELECT to_regclass('alembic_version') IS NOT NULL")[0][0]
        if not exists:
            return ()
        return tuple(r[0] for r in rows(self.url(i), "SELECT version_num FROM alembic_version"))

    def drop(self) -> None:
        conn = admin(self.pg)
        with conn.cursor() as cur:
            for database in self.databases:
                cur.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
        conn.close()


@pytest.fixture
def make_fleet(pg_server, harness_env, tmp_path):
    made: list[Fleet] = []

    def make(count: int, env: dict | None = None, port=None) -> Fleet:
        fleet = Fleet(pg_server, tmp_path, env or harness_env, count, port)
        made.append(fleet)
        return fleet

    yield make
    for fleet in made:
        fleet.drop()


def fleet_cmd(*args: str, env: dict, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*CLI, "fleet", *args], env=env, capture_output=True, text=True, timeout=timeout
    )


def report(result: subprocess.CompletedProcess) -> dict:
    assert result.stdout.strip(), result.stderr
    return json.loads(result.stdout)


def outcomes(document: dict) -> dict[str, str]:
    return {t["name"]: t["outcome"] for t in document["targets"]}


# --- the whole fleet ------------------------------------------------------------------------


def test_a_fleet_ends_at_head_and_a_rerun_costs_one_connection_each(make_fleet, pg_server):
    """10 databases behind a proxy, 4 at once: every one applied and at head, one JSON entry
    each; run again, each costs one connection (one query after the handshake)."""
    proxy = FaultProxy(pg_server.port)
    try:
        fleet = make_fleet(10, port=proxy.port)
        result = fleet_cmd(
            "migrate", "--targets", str(fleet.file), "--concurrency", "4", "--json", env=fleet.env
        )
        assert result.returncode == 0, result.stderr
        document = report(result)
        assert [t["name"] for t in document["targets"]] == fleet.names
        assert set(outcomes(document).values()) == {"applied"}
        assert all(t["from"] == "base" and t["to"] == HEAD for t in document["targets"])
        assert document["summary"]["applied"] == 10
        assert all(fleet.revision(i) == (HEAD,) for i in range(10))
        starts = [line for line in result.stderr.splitlines() if line.startswith("fleet: start")]
        assert starts[0] == "fleet: start tenant-00 (canary)" and len(starts) == 10
        assert "[10/10]" in result.stderr

        connections, chunks = proxy.connections, proxy.client_chunks
        again = fleet_cmd("migrate", "--targets", str(fleet.file), "--json", env=fleet.env)
        assert again.returncode == 0, again.stderr
        assert set(outcomes(report(again)).values()) == {"at-head"}
        assert proxy.connections - connections == 10  # one per target: no verify, no lock
        per_target = (proxy.client_chunks - chunks) / 10
        assert per_target <= 12  # the handshake (TLS, SCRAM), one query, Terminate
        connections, chunks = proxy.connections, proxy.client_chunks
        alone = subprocess.run(
            [*CLI, "migrate"],
            capture_output=True,
            text=True,
            timeout=300,
            env=dict(fleet.env, DATABASE_URL=fleet.env[fleet.var(0)]),
        )
        assert alone.returncode == 0, alone.stderr
        migrate_flushes = proxy.client_chunks - chunks
        assert proxy.connections - connections == 2  # `migrate` at head also verifies pooled
        assert per_target < migrate_flushes
        print(
            f"at head: fleet {per_target:g} flushes and 1 connection per target; "
            f"`neon-migrate migrate` {migrate_flushes} flushes, 2 connections"
        )
    finally:
        proxy.close()


def test_two_shards_started_at_once_cover_the_fleet_with_no_overlap(make_fleet):
    fleet = make_fleet(10)
    args = ["migrate", "--targets", str(fleet.file), "--json", "--shard"]
    jobs = [
        subprocess.Popen(
            [*CLI, "fleet", *args, f"{i}/2"],
            env=fleet.env,
            text=True,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for i in (1, 2)
    ]
    documents = []
    for job in jobs:
        stdout, stderr = job.communicate(timeout=600)
        assert job.returncode == 0, stderr
        documents.append(json.loads(stdout))
    one, two = (set(outcomes(d)) for d in documents)
    assert one and two and not one & two
    assert one | two == set(fleet.names)
    assert "tenant-00" in one  # the canary belongs to shard 1
    assert documents[1]["summary"]["selected"] == len(two) and documents[1]["shard"] == "2/2"
    assert all(fleet.revision(i) == (HEAD,) for i in range(10))


def test_a_failing_canary_leaves_every_other_database_untouched(make_fleet):
    fleet = make_fleet(8)
    with psycopg2.connect(fleet.url(0)) as conn, conn.cursor() as cur:
        cur.execute("CREATE TABLE account (id int)")  # what the first revision creates
    conn.close()
    result = fleet_cmd(
        "migrate",
        "--targets",
        str(fleet.file),
        "--json",
        "--keep-going",
        "--concurrency",
        "8",
        env=fleet.env,
    )
    assert result.returncode == 1
    document = report(result)
    got = outcomes(document)
    assert got.pop("tenant-00") == "failed"
    assert set(got.values()) == {"not-run"}
    assert "already exists" in document["targets"][0]["error"]
    assert "canary tenant-00" in document["summary"]["stopped"]
    assert all(fleet.revision(i) == () for i in range(8))  # the canary's rolled back too


@pytest.mark.slow
def test_sigterm_mid_fleet_then_a_rerun_migrates_each_database_once(make_fleet, project):
    """Revisions that take a while; SIGTERM once a few targets have started. The running
    ones are cancelled and rolled back, the rest never start; a rerun finishes the fleet
    and no revision ran twice anywhere (each appends its id to a table)."""
    add_revision(
        project,
        "mark0001",
        HEAD,
        "CREATE TABLE mark (rev text NOT NULL)",
        "INSERT INTO mark VALUES ('mark0001')",
    )
    add_revision(
        project,
        "slow0002",
        "mark0001",
        "INSERT INTO mark VALUES ('slow0002')",
        "SELECT pg_sleep(1.5)",
    )
    fleet = make_fleet(8, env=project["env"])
    command = [
        *CLI,
        "fleet",
        "migrate",
        "--targets",
        str(fleet.file),
        "--concurrency",
        "2",
        "--json",
    ]
    job = subprocess.Popen(
        command, env=fleet.env, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    seen = []
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        line = job.stderr.readline()
        seen.append(line)
        if sum(s.startswith("fleet: start") for s in seen) >= 3 and "[1/8]" in "".join(seen):
            break
    sleeping = ("SELECT count(*) FROM pg_stat_activity WHERE pid <> pg_backend_pid() "
                "AND query LIKE '%pg_sleep(1.5)%'")  # fmt: skip
    while rows(fleet.pg.url("postgres"), sleeping) == [(0,)]:  # inside a slow revision
        assert time.monotonic() < deadline and job.poll() is None, "".join(seen)
        time.sleep(0.02)
    job.send_signal(signal.SIGTERM)
    stdout, stderr = job.communicate(timeout=300)
    assert job.returncode == 143, "".join(seen) + stderr
    document = json.loads(stdout)
    got = outcomes(document)
    assert got["tenant-00"] == "applied"
    assert "not-run" in got.values() and "applied" in got.values()
    interrupted = [t for t in document["targets"] if t["outcome"] == "failed"]
    assert interrupted, got
    assert all("SIGTERM" in t["error"] for t in interrupted), interrupted
    for t in interrupted:  # what each says of its database is what the database shows
        now = fleet.revision(fleet.names.index(t["name"]))
        said = re.search(r"during revision (\w+) .*(rolled back|it is applied)", t["error"])
        if said:
            assert (said[1] in now) == (said[2] == "it is applied"), (t["error"], now)
        if t["to"] and not t["to"].startswith("unknown"):
            assert t["to"] == (", ".join(now) or "no revision (empty)"), (t["error"], now)
    assert document["summary"]["signal"] == "SIGTERM"
    for i, name in enumerate(fleet.names):
        expected = {"applied": ("slow0002",), "not-run": ()}.get(got[name])
        if expected is not None:
            assert fleet.revision(i) == expected, name
    locks = rows(
        fleet.pg.url("postgres"), "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'"
    )
    assert locks == [(0,)]

    again = fleet_cmd(
        "migrate", "--targets", str(fleet.file), "--json", "--concurrency", "4", env=fleet.env
    )
    assert again.returncode == 0, again.stderr
    redone = outcomes(report(again))
    assert all(redone[n] == "at-head" for n, o in got.items() if o == "applied")
    for i in range(8):
        assert fleet.revision(i) == ("slow0002",)
        marks = rows(fleet.url(i), "SELECT rev, count(*) FROM mark GROUP BY rev ORDER BY rev")
        assert marks == [("mark0001", 1), ("slow0002", 1)]


@pytest.mark.parametrize(
    "stall, expected",
    [
        (None, "interrupted by SIGTERM before it changed anything"),
        (b"server_version", "interrupted by SIGTERM before it changed anything"),
        (b"pg_catalog.version()", "interrupted by SIGTERM; no revision was half-applied"),
    ],
    ids=["its-first-connect", "reading-its-revision", "migrate-session-before-its-lock"],
)
def test_sigterm_while_a_target_waits_on_a_silent_link_names_the_signal(
    make_fleet, project, pg_server, stall, expected
):
    """A target stopped before `migrate` set its own handlers (connecting, reading its
    revision, the migration session's first query: SQLAlchemy's, on its first connect)
    names the signal and says nothing changed: not SIGINT, not a lost link or a cancel
    nobody asked for. From the stall on the proxy passes nothing: only the signal ends it."""
    proxy = FaultProxy(pg_server.port)
    try:
        fleet = make_fleet(1, env=project["env"], port=proxy.port)
        env = dict(fleet.env, DB_CONNECT_TIMEOUT="60", DB_CONNECT_RETRY_SECONDS="0")
        env[fleet.var(0)] += "?sslmode=disable"  # the proxy cannot see inside TLS
        proxy.go_silent(on=stall)
        job = subprocess.Popen(
            [*CLI, "fleet", "migrate", "--targets", str(fleet.file), "--json"],
            env=env,
            text=True,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        deadline = time.monotonic() + 120
        while not (proxy.silent and proxy.connections):
            assert time.monotonic() < deadline and job.poll() is None, job.communicate()
            time.sleep(0.05)
        time.sleep(0.5)  # waiting in select, not on its way there
        sent = time.monotonic()
        job.send_signal(signal.SIGTERM)
        stdout, stderr = job.communicate(timeout=120)
        took = time.monotonic() - sent
    finally:
        proxy.close()
    assert job.returncode == 143, stderr
    [target] = json.loads(stdout)["targets"]
    assert target["outcome"] == "failed" and target["error"].startswith(expected), target
    assert "SIGINT" not in target["error"] and "cancel" not in target["error"], target
    ends_within(took, 15, "the stop")  # 3 s for an answer to a statement; a connect: at once
    assert fleet.revision(0) == ()
    locks = rows(
        pg_server.url("postgres"), "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'"
    )
    assert locks == [(0,)]


def test_ctrl_c_to_the_whole_process_group_reaches_each_target_once(make_fleet, project):
    """A terminal's Ctrl-C signals every process of the foreground group. Each target's
    process is in a group of its own and gets SIGINT once, from the runner: it cancels and
    rolls back as `migrate` does (a second signal would have killed it mid-revision)."""
    add_revision(project, "slow0001", HEAD, "SELECT pg_sleep(4)", "CREATE TABLE done (id int)")
    fleet = make_fleet(4, env=project["env"])
    command = [
        *CLI,
        "fleet",
        "migrate",
        "--targets",
        str(fleet.file),
        "--canary",
        "0",
        "--concurrency",
        "2",
        "--json",
    ]
    job = subprocess.Popen(
        command,
        env=fleet.env,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    seen = []
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and sum(s.startswith("fleet: start") for s in seen) < 2:
        seen.append(job.stderr.readline())
    sleeping = ("SELECT count(*) FROM pg_stat_activity WHERE pid <> pg_backend_pid() "
                "AND query LIKE '%pg_sleep(4)%'")  # fmt: skip
    while rows(fleet.pg.url("postgres"), sleeping) != [(2,)]:  # both inside the slow revision
        assert time.monotonic() < deadline and job.poll() is None, "".join(seen)
        time.sleep(0.02)
    os.killpg(job.pid, signal.SIGINT)
    stdout, stderr = job.communicate(timeout=300)
    assert job.returncode == 130, "".join(seen) + stderr
    targets = json.loads(stdout)["targets"]
    stopped = [t for t in targets if t["outcome"] == "failed"]
    assert stopped, targets
    assert all(
        "interrupted by SIGINT" in t["error"] and "ended by" not in t["error"] for t in stopped
    ), stopped
    assert [t["outcome"] for t in targets].count("not-run") == 2
    for i, target in enumerate(targets):  # the interrupted revision rolled back whole
        expected = {"applied": [("slow0001",)], "failed": [(), (HEAD,)], "not-run": [()]}
        assert fleet.revision(i) in expected[target["outcome"]], target


def test_a_targets_pooled_door_is_verified_after_it_is_migrated(make_fleet, pgbouncer):
    """pooled_url_env names the app's door (PgBouncer here): `migrate` verifies it as it
    does for one database. A pooled door onto another database fails that target."""
    fleet = make_fleet(3)
    fleet.env["POOLED_00"] = fleet.pg.pooled_url(fleet.databases[0])
    fleet.env["POOLED_01"] = fleet.pg.pooled_url(fleet.databases[2])  # the wrong database
    text = (
        fleet.file.read_text()
        .replace(
            'url_env = "FLEET_DB_00"\n', 'url_env = "FLEET_DB_00"\npooled_url_env = "POOLED_00"\n'
        )
        .replace(
            'url_env = "FLEET_DB_01"\n', 'url_env = "FLEET_DB_01"\npooled_url_env = "POOLED_01"\n'
        )
    )
    fleet.file.write_text(text)
    result = fleet_cmd(
        "migrate",
        "--targets",
        str(fleet.file),
        "--json",
        "--keep-going",
        "--concurrency",
        "1",
        env=fleet.env,
    )
    assert result.returncode == 1, result.stderr
    targets = report(result)["targets"]
    assert [t["outcome"] for t in targets] == ["applied", "failed", "applied"]
    assert targets[1]["to"] == HEAD  # migrated, then its pooled door disagreed
    assert targets[1]["error"].startswith("verify pooled: revision none")
    assert fleet.pg.password not in result.stdout + result.stderr


# --- bad input and faults -------------------------------------------------------------------


@pytest.mark.slow
def test_a_missing_variable_fails_its_target_and_stops_the_rest_unless_keep_going(make_fleet):
    fleet = make_fleet(4)
    env = {k: v for k, v in fleet.env.items() if k != fleet.var(1)}
    result = fleet_cmd(
        "migrate", "--targets", str(fleet.file), "--json", "--concurrency", "1", env=env
    )
    assert result.returncode == 1
    document = report(result)
    assert outcomes(document) == {
        "tenant-00": "applied",
        "tenant-01": "failed",
        "tenant-02": "not-run",
        "tenant-03": "not-run",
    }
    assert "FLEET_DB_01 is not set" in document["targets"][1]["error"]
    going = fleet_cmd("migrate", "--targets", str(fleet.file), "--json", "--keep-going", env=env)
    assert going.returncode == 1
    assert outcomes(report(going)) == {
        "tenant-00": "at-head",
        "tenant-01": "failed",
        "tenant-02": "applied",
        "tenant-03": "applied",
    }


def test_two_targets_naming_one_database_are_refused_before_anything_runs(make_fleet):
    fleet = make_fleet(3)
    env = dict(fleet.env)
    env[fleet.var(0)] = fleet.url(2)  # the same database, written the same way
    result = fleet_cmd("migrate", "--targets", str(fleet.file), env=env)
    assert result.returncode == 2, result.stderr
    error = result.stderr.strip().splitlines()[-1]
    assert error.startswith("error: ") and "'tenant-00' (line 1)" in error
    assert "'tenant-02' (line 9)" in error and "same database" in error
    assert fleet.pg.password not in result.stderr + result.stdout
    assert all(fleet.revision(i) == () for i in range(3))
    env[fleet.var(0)] = fleet.url(2) + "?application_name=other"  # written another way
    assert fleet_cmd("migrate", "--targets", str(fleet.file), env=env).returncode == 2


def test_an_unreachable_target_is_bounded_and_reported(make_fleet):
    """A port nobody listens on: refused at once, retried for DB_CONNECT_RETRY_SECONDS."""
    fleet = make_fleet(3)
    env = dict(fleet.env, DB_CONNECT_RETRY_SECONDS="2", DB_CONNECT_TIMEOUT="2")
    proxy = FaultProxy(fleet.pg.port)
    proxy.refuse()
    env[fleet.var(1)] = fleet.pg.url(fleet.databases[1], port=proxy.port)
    started = time.monotonic()
    result = fleet_cmd("migrate", "--targets", str(fleet.file), "--json", "--keep-going", env=env)
    took = time.monotonic() - started
    proxy.close()
    assert result.returncode == 3, result.stderr
    document = report(result)
    assert outcomes(document) == {
        "tenant-00": "applied",
        "tenant-01": "unreachable",
        "tenant-02": "applied",
    }
    assert f"cannot connect to 127.0.0.1:{proxy.port}" in document["targets"][1]["error"]
    assert took < 120  # 2 s of retries; the rest is start-up on a shared machine
    assert fleet.pg.password not in result.stdout + result.stderr


@pytest.mark.slow
def test_a_database_ahead_of_the_scripts_is_refused_for_that_target(make_fleet):
    fleet = make_fleet(3)
    with psycopg2.connect(fleet.url(1)) as conn, conn.cursor() as cur:
        cur.execute("CREATE TABLE alembic_version (version_num varchar(32) PRIMARY KEY)")
        cur.execute("INSERT INTO alembic_version VALUES ('fffffffffff1')")
    conn.close()
    result = fleet_cmd(
        "migrate", "--targets", str(fleet.file), "--json", "--keep-going", env=fleet.env
    )
    assert result.returncode == 1
    document = report(result)
    assert outcomes(document)["tenant-01"] == "failed"
    assert "fffffffffff1, which these scripts do not have" in document["targets"][1]["error"]
    assert fleet.revision(1) == ("fffffffffff1",)
    assert fleet.revision(2) == (HEAD,)

    status = fleet_cmd("status", "--targets", str(fleet.file), "--json", env=fleet.env)
    assert status.returncode == 1
    states = {t["name"]: t["state"] for t in report(status)["targets"]}
    assert states == {"tenant-00": "at-head", "tenant-01": "ahead", "tenant-02": "at-head"}


def test_the_markdown_report_the_job_summary_and_one_error_per_failed_target(make_fleet):
    """Under GITHUB_ACTIONS=true: the Markdown on stdout is what the summary gets, each
    target that did not get there is one ::error titled with its name, no password."""
    from markdown_it import MarkdownIt

    fleet = make_fleet(3)
    summary = fleet.folder / "summary.md"
    summary.write_text("earlier step's summary\n")
    env = dict(fleet.env, DB_CONNECT_RETRY_SECONDS="0", GITHUB_ACTIONS="true")
    env["GITHUB_STEP_SUMMARY"] = str(summary)
    del env[fleet.var(1)]  # failed
    env[fleet.var(2)] = fleet.pg.url(fleet.databases[2], port=1)  # unreachable, password in it
    result = fleet_cmd(
        "migrate", "--targets", str(fleet.file), "--format", "markdown", "--keep-going", env=env
    )
    assert result.returncode == 1, result.stderr
    text = result.stdout
    assert text, result.stderr
    assert text.startswith("# Fleet migrate: NOT DONE\n\n**Exit 1**: a target failed")
    tokens = MarkdownIt("commonmark").enable("table").parse(text)
    cells = [
        tokens[i + 1].content for i, t in enumerate(tokens) if t.type in ("th_open", "td_open")
    ]
    assert cells[:6] == ["Target", "Outcome", "From", "To", "Time", "Error"]
    rows = [cells[i : i + 6] for i in range(6, len(cells), 6)]
    assert [(r[0], r[1], r[3]) for r in rows] == [
        ("tenant-00", "applied", HEAD),
        ("tenant-01", "**failed**", ""),
        ("tenant-02", "**unreachable**", ""),
    ]
    assert "FLEET_DB_01 is not set" in rows[1][5] and "127.0.0.1:1" in rows[2][5]
    assert "**Summary:** 1 applied, 0 at head, 1 failed, 0 not run, 1 unreachable" in text
    assert summary.read_text() == "earlier step's summary\n" + text
    errors = [line for line in result.stderr.splitlines() if line.startswith("::")]
    assert [e.split("::")[1] for e in errors] == ["error title=tenant-01", "error title=tenant-02"]
    assert "FLEET_DB_01 is not set" in errors[0]
    assert fleet.pg.password not in result.stdout + result.stderr + summary.read_text()

    status = fleet_cmd("status", "--targets", str(fleet.file), "--format", "markdown", env=env)
    assert status.returncode == 1, status.stderr
    assert status.stdout.startswith("# Fleet status: NOT ALL AT HEAD")
    assert "| tenant-00 | at-head | " in status.stdout
    assert "| tenant-02 | **unreachable** | " in status.stdout
    assert summary.read_text().endswith(status.stdout)
    assert fleet.pg.password not in status.stdout + status.stderr


def test_json_and_another_format_together_are_a_usage_error(tmp_path, harness_env):
    path = tmp_path / "fleet.toml"
    path.write_text('[[target]]\nname = "a"\nurl_env = "A"\n')
    for action in ("migrate", "status"):
        result = fleet_cmd(
            action, "--targets", str(path), "--json", "--format", "markdown", env=harness_env
        )
        assert result.returncode == 2 and "--json and --format markdown disagree" in result.stderr


@pytest.mark.slow
def test_status_says_each_targets_state(make_fleet, project):
    add_revision(project, "next0001", HEAD, "CREATE TABLE extra (id int)")
    add_revision(project, "next0002", "next0001", "ALTER TABLE extra ADD COLUMN x int")
    fleet = make_fleet(4, env=project["env"])
    first = fleet_cmd(
        "migrate", "--targets", str(fleet.file), "--to", HEAD, "--json", env=fleet.env
    )
    assert first.returncode == 0, first.stderr
    assert {t["to"] for t in report(first)["targets"]} == {HEAD}
    env = dict(fleet.env, DB_CONNECT_RETRY_SECONDS="0")
    env[fleet.var(2)] = fleet.pg.url(fleet.databases[2], port=1)  # nobody there
    del env[fleet.var(3)]
    result = fleet_cmd("status", "--targets", str(fleet.file), "--json", env=env)
    assert result.returncode == 1, result.stderr
    targets = {t["name"]: t for t in report(result)["targets"]}
    assert targets["tenant-00"]["state"] == "behind" and targets["tenant-00"]["behind"] == 2
    assert targets["tenant-00"]["revision"] == HEAD
    assert targets["tenant-02"]["state"] == "unreachable"
    assert targets["tenant-03"]["state"] == "unknown-revision"
    assert "FLEET_DB_03 is not set" in targets["tenant-03"]["error"]
    table = fleet_cmd("status", "--targets", str(fleet.file), env=fleet.env)
    assert "behind by 2" in table.stdout


def test_dry_run_says_what_each_target_would_apply_and_changes_nothing(make_fleet):
    fleet = make_fleet(3)
    result = fleet_cmd(
        "migrate", "--targets", str(fleet.file), "--dry-run", "--json", env=fleet.env
    )
    assert result.returncode == 0, result.stderr
    document = report(result)
    assert set(outcomes(document).values()) == {"not-run"}
    assert all(t["pending"] == [HEAD] for t in document["targets"])
    assert all(fleet.revision(i) == () for i in range(3))


# --- the targets file -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "line", "words"),
    [
        (
            '[[target]]\nname = "a"\nurl_env = "A"\n\n[[target]]\nname = "b"\nurl_env = \n',
            7,
            "not valid TOML",
        ),
        (
            '[[target]]\nname = "a"\nurl_env = "A"\n[[target]]\nname = "a"\nurl_env = "B"\n',
            5,
            "'a' is used twice (first on line 1)",
        ),
        (
            '[[target]]\nname = "a"\nurl_env = "postgresql://u:hunter2@h/db"\n',
            3,
            "holds a connection string",
        ),
        ('[[target]]\nname = "a"\nurl_env = "A"\nurl = "x"\n', 4, "unknown key 'url'"),
        ('[[target]]\nname = "a"\n', 1, "url_env is missing"),
        ("targets = 1\n", 1, "unknown key 'targets'"),
        ("# nothing\n", 1, "no targets"),
        (
            '[neon]\nproject_id_env = "P"\napi_key_env = "K"\ndatabase = "d"\nrole = "r"\n',
            1,
            "[neon] needs branches",
        ),
    ],
)
def test_a_bad_targets_file_is_one_line_naming_its_line(text, line, words, tmp_path, harness_env):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    result = fleet_cmd("migrate", "--targets", str(path), env=harness_env)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert f"bad.toml line {line}: " in lines[0] and words in lines[0]
    assert "hunter2" not in result.stderr


def test_flags_are_checked_before_anything_runs(tmp_path, harness_env):
    path = tmp_path / "fleet.toml"
    path.write_text('[[target]]\nname = "a"\nurl_env = "A"\n')
    for flags in (
        ["--shard", "3/2"],
        ["--shard", "0/2"],
        ["--concurrency", "0"],
        ["--canary", "-1"],
        ["--to", "nosuchrev"],
    ):
        result = fleet_cmd("migrate", "--targets", str(path), *flags, env=harness_env)
        assert result.returncode == 2, (flags, result.stderr)
    assert (
        fleet_cmd("status", "--targets", str(tmp_path / "none.toml"), env=harness_env).returncode
        == 2
    )


def test_shards_are_disjoint_cover_everything_and_keep_the_canary_in_shard_one():
    from neon_migrate.fleet.shard import select, shard_of
    from neon_migrate.fleet.targets import Target

    targets = [Target(f"db-{i}", i) for i in range(500)]
    for count in (1, 2, 3, 7):
        parts = [select(targets, (i, count), canary=3) for i in range(1, count + 1)]
        names = [t.name for first, rest in parts for t in first + rest]
        assert sorted(names) == sorted(t.name for t in targets)  # each exactly once
        assert [t.name for t in parts[0][0]] == ["db-0", "db-1", "db-2"]
        assert all(not first for first, _ in parts[1:])
    assert shard_of("tenant-a", 4) == shard_of("tenant-a", 4)  # no per-process hash seed
    fewer = select(targets[:250], (2, 3), canary=3)[1]
    assert {t.name for t in fewer} <= {t.name for t in select(targets, (2, 3), canary=3)[1]}


def test_each_target_process_draws_its_own_session_token():
    """The fork server preloads only modules that hold no per-process secret: the
    migration session's token is drawn in each target's process."""
    from neon_migrate.fleet.worker import PRELOAD

    code = (
        "import sys\n"
        + "".join(f"import {m}\n" for m in PRELOAD)
        + "print(sorted(m for m in sys.modules if m.startswith('neon_migrate')))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env=dict(os.environ),
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "neon_migrate.connection.targets" not in result.stdout


# --- the [neon] form ------------------------------------------------------------------------

NEON_FILE = """\
[neon]
project_id_env = "FLEET_NEON_PROJECT"
api_key_env = "FLEET_NEON_KEY"
branches = "tenant-*"
database = "{database}"
role = "{role}"
"""


@pytest.mark.slow
def test_the_neon_form_migrates_the_matching_branches_of_the_standin(
    pg_server, harness_env, tmp_path
):
    """The local stand-in of Neon's API: its default branch and 11 more, 5 of them
    tenant-*. The fleet is those 5, in name order, each a real copy migrated on its own."""
    from helpers import standin_server

    from neon_migrate.branches.api import NeonApi
    from neon_migrate.twin.local import bundled_bin_dir
    from neon_migrate.twin.standin import start_standin, stop_standin

    parent = f"fleetneon_{uuid.uuid4().hex[:8]}"
    conn = admin(pg_server)
    conn.cursor().execute(f"CREATE DATABASE {parent}")
    root = tmp_path / "standin"
    bin_dir = Path(os.environ.get("LOCAL_PG_BIN_DIR") or bundled_bin_dir())
    info = start_standin(root, standin_server(pg_server, parent), bin_dir)
    try:
        api = NeonApi(info.base_url, info.api_key, info.project_id)
        main = next(b["id"] for b in api.branches() if b.get("default"))
        names = [f"preview-{i}" for i in range(5)] + [
            "tenant-e",
            "tenant-b",
            "staging",
            "tenant-a",
            "tenant-d",
            "tenant-c",
        ]
        branches = {}
        for name in names:
            made = api.create_branch(main, name)
            api.wait_for_operations(made.operation_ids, 120)
            branches[name] = api.connection_uri(
                made.branch_id, made.endpoint_id, parent, pg_server.user
            )
        assert len(api.branches()) == 12
        path = tmp_path / "neon.toml"
        path.write_text(NEON_FILE.format(database=parent, role=pg_server.user))
        env = dict(
            harness_env,
            NEON_API_URL=info.base_url,
            FLEET_NEON_KEY=info.api_key,
            FLEET_NEON_PROJECT=info.project_id,
        )
        result = fleet_cmd("migrate", "--targets", str(path), "--json", env=env)
        assert result.returncode == 0, result.stderr
        document = report(result)
        tenants = [f"tenant-{c}" for c in "abcde"]
        assert [t["name"] for t in document["targets"]] == tenants
        assert set(outcomes(document).values()) == {"applied"}
        assert "fleet: start tenant-a (canary)" in result.stderr
        for name, uri in branches.items():
            at = rows(uri, "SELECT to_regclass('alembic_version')::text")[0][0]
            assert (at is not None) == name.startswith("tenant-"), name
        assert rows(pg_server.url(parent), "SELECT to_regclass('alembic_version')") == [(None,)]
        assert info.api_key not in result.stdout + result.stderr
        assert pg_server.password not in result.stdout + result.stderr

        status = fleet_cmd("status", "--targets", str(path), "--json", env=env)
        assert status.returncode == 0, status.stderr
        assert {t["state"] for t in report(status)["targets"]} == {"at-head"}
        api.close()
    finally:
        stop_standin(root)
        with conn.cursor() as cur:
            cur.execute("SELECT datname FROM pg_database WHERE datname LIKE %s", (parent + "%",))
            for (name,) in cur.fetchall():
                cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.close()


def test_every_page_of_the_branch_list_is_read():
    """Neon pages its branch list (limit, cursor, pagination.next): a fleet of more
    branches than a page holds is read whole, and a repeating cursor ends the walk."""
    import httpx

    from neon_migrate.branches.api import NeonApi
    from neon_migrate.fleet.neon import NeonFleet
    from neon_migrate.fleet.targets import NeonSpec

    pages = {None: ("c1", range(0, 3)), "c1": ("c2", range(3, 6)), "c2": ("c2", range(6, 7))}
    cursors: list = []

    def answer(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/branches"):
            cursor = request.url.params.get("cursor")
            cursors.append(cursor)
            following, numbers = pages[cursor]
            body = {
                "branches": [{"id": f"br-{i}", "name": f"tenant-{i}"} for i in numbers]
                + [{"id": f"br-x{cursor}", "name": f"other-{cursor}"}],
                "pagination": {"next": following},
            }
            return httpx.Response(200, json=body)
        if request.url.path.endswith("/endpoints"):
            endpoints = [
                {"id": f"ep-{i}", "branch_id": f"br-{i}", "type": "read_write"} for i in range(7)
            ]
            return httpx.Response(200, json={"endpoints": endpoints})
        branch = request.url.params["branch_id"]
        return httpx.Response(200, json={"uri": f"postgresql://u:pw@{branch}.example/db"})

    api = NeonApi(
        "https://console.neon.tech/api/v2", "k" * 20, "p-1", transport=httpx.MockTransport(answer)
    )
    spec = NeonSpec(1, "P", "K", "tenant-*", "db", "owner")
    with NeonFleet(spec, {}, api=api) as fleet:
        targets = fleet.targets()
        assert [t.name for t in targets] == [f"tenant-{i}" for i in range(7)]
        assert cursors == [None, "c1", "c2"]
        with_urls = fleet.with_urls(targets[:2])
    assert [t.url for t in with_urls] == [
        "postgresql://u:pw@br-0.example/db",
        "postgresql://u:pw@br-1.example/db",
    ]
    assert "pw" not in repr(with_urls)
