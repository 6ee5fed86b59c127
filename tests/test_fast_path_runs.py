"""The fast path on a real server: the same database as the normal path, and a failed
message replayed statement by statement (see neon_migrate/migrate/fast_path.py)."""

from __future__ import annotations

import re
import subprocess
import threading
import time

import psycopg
from helpers import CLI, add_revision, cli, rows
from test_corpus import corpus, drop_database, fresh_database  # noqa: F401 (a fixture)

from neon_migrate.migrate.history import HISTORY_TABLE
from neon_migrate.twin.local import bundled_bin_dir

HEAD = "f096d6eff8ee"  # the example project's head
STAMPS = "SELECT version_num FROM alembic_version ORDER BY 1"
HISTORY = f"SELECT revision, direction FROM {HISTORY_TABLE} ORDER BY applied_at, revision"


def dump(url: str, *options: str) -> str:
    """pg_dump's text, byte-for-byte comparable (a fixed key: pg_dump 18 writes a random
    one otherwise)."""
    command = [str(bundled_bin_dir() / "pg_dump"), "--restrict-key=fastpath", *options, url]
    return subprocess.run(command, capture_output=True, text=True, check=True, timeout=60).stdout


# What each run makes up for itself: now() and gen_random_uuid() defaults.
_VOLATILE = re.compile(
    r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(?:\.\d+)?\+00"
    r"|[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
)


def _data(url: str) -> str:
    """Every table's rows but the history's, with the values each run makes up masked."""
    data = dump(url, "--data-only", f"--exclude-table-data={HISTORY_TABLE}")
    assert data.count("\n") > 50, data  # the corpus seeds rows: there is something to compare
    return _VOLATILE.sub("<made up>", data)


def test_the_corpus_gives_the_same_database_by_either_path(corpus, pg_server):  # noqa: F811
    """Same schema (pg_dump), same rows, same stamps and history, on this server's major."""
    fast_url = fresh_database(pg_server, "corpus_fast")
    normal_url = fresh_database(pg_server, "corpus_normal")
    try:
        fast = cli("migrate", env=dict(corpus["env"], DATABASE_URL=fast_url))
        assert fast.returncode == 0, fast.stdout
        normal = cli("migrate", env=dict(corpus["env"], DATABASE_URL=normal_url,
                                         MIGRATION_FAST_PATH="false"))  # fmt: skip
        assert normal.returncode == 0, normal.stdout
        assert "one message" in fast.stdout and "one message" not in normal.stdout
        assert dump(fast_url, "--schema-only") == dump(normal_url, "--schema-only")
        assert _data(fast_url) == _data(normal_url)
        assert rows(fast_url, STAMPS) == rows(normal_url, STAMPS)
        assert rows(fast_url, HISTORY) == rows(normal_url, HISTORY)
    finally:
        drop_database(pg_server, "corpus_fast")
        drop_database(pg_server, "corpus_normal")


def test_a_failed_message_is_replayed_and_names_the_statement_as_the_normal_path(project, db_url):
    """The message was rolled back whole, and the server does not say which statement
    failed: the revision runs again statement by statement, and says what the normal path
    says."""
    add_revision(project, "r1", HEAD, "CREATE TABLE kept (id int)")
    add_revision(project, "r2", "r1", "CREATE TABLE lost (id int)", "SELECT 1/0")
    fast = cli("migrate", env=project["env"])
    assert fast.returncode == 1, fast.stdout
    replayed = ("revision r2 failed as one message (division by zero) and was rolled back; "
                "running it statement by statement")  # fmt: skip
    assert replayed in fast.stdout, fast.stdout
    assert "applied  r1  r1 test revision" in fast.stdout and "one message)" in fast.stdout
    error = fast.stdout[fast.stdout.index("error: ") :]
    assert rows(db_url, "SELECT to_regclass('kept')::text, to_regclass('lost')::text") == [
        ("kept", None)
    ]
    with_normal = dict(project["env"], MIGRATION_FAST_PATH="false")
    normal = cli("migrate", env=with_normal)
    assert normal.returncode == 1
    assert normal.stdout[normal.stdout.index("error: ") :] == error
    assert "division by zero" in error and "revision r2 (r2 test revision)" in error


def test_a_busy_table_fails_the_message_then_takes_the_lock_retry(project, db_url):
    """lock_timeout inside the message: replayed on the normal path, which meets the lock
    again and retries after a backoff, as if it had run there first."""
    assert cli("migrate", env=project["env"]).returncode == 0
    add_revision(project, "r1", HEAD, "ALTER TABLE account ADD COLUMN busy int")
    env = dict(project["env"], MIGRATION_LOCK_TIMEOUT="0.5", MIGRATION_LOCK_RETRY_DELAY="0.5")
    with psycopg.connect(db_url) as holder:
        holder.execute("LOCK TABLE account IN ACCESS SHARE MODE")
        run = subprocess.Popen([*CLI, "migrate"], env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)  # fmt: skip
        lines: list[str] = []
        reader = threading.Thread(target=lambda: lines.extend(run.stdout), daemon=True)
        reader.start()
        deadline = time.monotonic() + 90
        while not any("retry 1 of 5" in line for line in lines):  # message, replay, retry
            assert time.monotonic() < deadline and run.poll() is None, "".join(lines)
            time.sleep(0.05)
        holder.rollback()
    run.wait(timeout=120)
    reader.join(timeout=10)
    out = "".join(lines)
    assert run.returncode == 0, out
    assert "revision r1 failed as one message (canceling statement due to lock timeout)" in out
    assert "lock_timeout (500ms) waiting for" in out and "retry 1 of 5" in out, out
    assert rows(db_url, STAMPS) == [("r1",)]
    busy = "SELECT count(*) FROM information_schema.columns WHERE column_name = 'busy'"
    assert rows(db_url, busy) == [(1,)]
