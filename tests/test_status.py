"""`status`, `history` and the pre-deploy `validate` step, on a real server: the history
the harness writes next to Alembic's stamp, read back with dates, durations, who applied
each revision and whether its file was edited since."""

from __future__ import annotations

import hashlib
import json
import socket
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest
from alembic import command
from alembic.config import Config
from alembic.util import CommandError
from helpers import add_revision, psql

from neon_migrate.check.predeploy import exit_code, run_checks, selected
from neon_migrate.migrate.history import HISTORY_TABLE
from neon_migrate.migrate.status import run_history, run_status, status

HEAD = "f096d6eff8ee"
BY = f"neon-migrate@{socket.gethostname()}"


def config(project: dict) -> Config:
    return Config(str(project["root"] / "alembic.ini"))


def upgrade(project: dict, target: str = "head") -> None:
    command.upgrade(config(project), target)


def history_rows(url: str) -> list[tuple]:
    with psycopg.connect(url) as conn:
        return conn.execute(
            f"SELECT revision, direction, duration_ms, checksum, application, host "
            f"FROM {HISTORY_TABLE} ORDER BY applied_at"
        ).fetchall()


def sha256(path: Path) -> str:  # of a file written with LF line endings
    return hashlib.sha256(path.read_bytes()).hexdigest()


def versions(project: dict) -> Path:
    return project["root"] / "migrations" / "versions"


def by_revision(result) -> dict:
    return {entry.revision: entry for entry in result.revisions}


def run(function, project: dict, as_json: bool) -> tuple[int, str]:
    lines: list[str] = []
    code = function(config(project), as_json, out=lines.append)
    return code, "\n".join(lines)


def validate_check(project: dict):
    ids = selected(["validate"], [])
    ctx = run_checks(str(project["root"] / "alembic.ini"), project["root"], ids)
    return exit_code(ctx), ctx.results["validate"]


def test_status_after_migrate_up_down_up(project, db_url):
    upgrade(project)
    command.downgrade(config(project), "base")  # recorded too
    assert by_revision(status(config(project)))[HEAD].state == "pending"  # alembic_version
    r2 = add_revision(project, "r2", HEAD, "CREATE TABLE audit (id int)", "SELECT pg_sleep(0.02)")
    upgrade(project)
    rows = history_rows(db_url)
    assert [(r[0], r[1]) for r in rows] == [
        (HEAD, "upgrade"),
        (HEAD, "downgrade"),
        (HEAD, "upgrade"),
        ("r2", "upgrade"),
    ]
    head_file = next(versions(project).glob(f"*{HEAD}*.py"))
    assert rows[0][3] == sha256(head_file) and rows[-1][3] == sha256(r2)
    assert rows[-1][2] >= 20  # pg_sleep(0.02): the revision's own time, timed by the server
    assert rows[-1][2] < 5000  # from its one message's arrival, not from the run's start
    assert {(r[4], r[5]) for r in rows} == {("neon-migrate", socket.gethostname())}

    result = status(config(project))
    assert result.current == ["r2"] and result.heads == ["r2"] and result.problems == []
    for entry in result.revisions:
        assert entry.state == "applied" and entry.checksum == "ok"
        assert entry.applied_at is not None and entry.duration_ms > 0
        assert entry.applied_by == BY
    assert [e.revision for e in result.revisions] == [HEAD, "r2"]

    add_revision(project, "r3", "r2", "SELECT 1")
    code, out = run(run_status, project, as_json=False)
    assert code == 0, out
    lines = out.splitlines()
    assert lines[0].split() == ["revision", "state", "applied", "(UTC)", "took", "by", "file",
                                "message"]  # fmt: skip
    assert lines[1].startswith(f"{HEAD}  applied  20") and BY in lines[1] and " ok " in lines[1]
    assert lines[3].split()[:2] == ["r3", "pending"]
    assert lines[4] == "database at r2: 2 applied, 1 pending"

    code, out = run(run_status, project, as_json=True)
    report = json.loads(out)
    assert code == 0
    assert set(report) >= {"version", "revisions", "problems", "current", "heads"}
    assert report["version"] == 1 and report["current"] == ["r2"] and report["heads"] == ["r3"]
    assert [(r["revision"], r["state"]) for r in report["revisions"]] == [
        (HEAD, "applied"),
        ("r2", "applied"),
        ("r3", "pending"),
    ]
    assert report["revisions"][1]["applied_at"].endswith("+00:00")


def test_an_edited_applied_file_fails_status_and_the_check(project, db_url):
    r2 = add_revision(project, "r2", HEAD, "CREATE TABLE audit (id int)")
    upgrade(project)
    code, check = validate_check(project)
    assert code == 0 and check.status == "pass"
    assert (
        check.message == "2 applied revision(s) match their files (2 recorded, 0 applied "
        "before the history)"
    )

    r2.write_bytes(r2.read_bytes().replace(b"\n", b"\r\n"))  # a Windows checkout: not an edit
    assert [e.checksum for e in status(config(project)).revisions] == ["ok", "ok"]
    r2.write_text(r2.read_text().replace("audit (id int)", "audit (id bigint)"))
    result = status(config(project))
    assert by_revision(result)["r2"].checksum == "edited"
    assert by_revision(result)[HEAD].checksum == "ok"
    code, out = run(run_status, project, as_json=False)
    assert code == 1
    assert "problem: revision r2 (r2 test revision) was edited after it was applied" in out

    code, check = validate_check(project)
    assert code == 1 and check.status == "fail"
    assert check.message.startswith("revision r2 (r2 test revision) was edited after it was")
    assert check.details == {"edited": ["r2"], "missing": []}


def test_a_deleted_applied_file_is_missing(project, db_url):
    r2 = add_revision(project, "r2", HEAD, "SELECT 1")
    upgrade(project)
    r2.unlink()
    code, out = run(run_status, project, as_json=True)
    report = json.loads(out)
    assert code == 1
    missing = report["revisions"][-1]
    assert (missing["revision"], missing["state"]) == ("r2", "missing")
    assert missing["applied_by"] == BY  # what the history knows of it
    assert report["problems"] == [
        "the database is at r2, which no revision file defines (a deleted file, or a "
        "database migrated from another branch or a newer build); which other revisions it "
        "includes cannot be told without its file"
    ]
    code, check = validate_check(project)
    assert code == 1 and check.details == {"edited": [], "missing": ["r2"]}
    assert "the database is at r2, which no revision file defines" in check.message


STOCK_ENV = """
import os
from alembic import context
from sqlalchemy import create_engine
from sqlalchemy.pool import NullPool

url = os.environ["DATABASE_URL"].replace("postgresql://", "postgresql+psycopg2://")
with create_engine(url, poolclass=NullPool).connect() as connection:
    context.configure(connection=connection)
    with context.begin_transaction():
        context.run_migrations()
"""


def test_a_revision_applied_by_stock_alembic_has_no_record(project, db_url):
    env_py = project["root"] / "migrations" / "env.py"
    harness_env_py = env_py.read_text()
    env_py.write_text(STOCK_ENV)
    upgrade(project)  # stock Alembic: no history table
    env_py.write_text(harness_env_py)
    add_revision(project, "r2", HEAD, "SELECT 1")
    upgrade(project)
    assert [r[0] for r in history_rows(db_url)] == ["r2"]
    result = status(config(project))
    assert [(e.revision, e.checksum) for e in result.revisions] == [
        (HEAD, "no record"),
        ("r2", "ok"),
    ]
    assert by_revision(result)[HEAD].applied_at is None and result.problems == []
    code, out = run(run_status, project, as_json=False)
    assert code == 0
    assert f"{HEAD}  applied  -" in out and "no record" in out
    code, check = validate_check(project)
    assert code == 0
    assert (
        check.message == "2 applied revision(s) match their files (1 recorded, 1 applied "
        "before the history)"
    )


def test_a_revision_that_commits_itself_keeps_its_row_when_a_later_one_fails(project, db_url):
    """r2 commits midway (autocommit_block): its stamp and its row are committed together
    after it; r3 fails and is rolled back with its row."""
    add_revision(
        project,
        "r2",
        HEAD,
        source=(
            "    op.execute('CREATE TABLE audit (id int)')\n"
            "    with op.get_context().autocommit_block():\n"
            "        op.execute('CREATE INDEX CONCURRENTLY ix_audit_id ON audit (id)')\n"
            "    op.execute('INSERT INTO audit VALUES (1)')"
        ),
    )
    add_revision(project, "r3", "r2", "SELECT 1/0")
    result = subprocess.run(
        [sys.executable, "-m", "alembic", "upgrade", "head"],
        env=project["env"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0 and "revision r3" in result.stdout
    with psycopg.connect(db_url) as conn:
        assert conn.execute("SELECT version_num FROM alembic_version").fetchall() == [("r2",)]
    rows = history_rows(db_url)
    assert [(r[0], r[1]) for r in rows] == [(HEAD, "upgrade"), ("r2", "upgrade")]
    assert rows[1][3] == sha256(versions(project) / "r2.py")
    states = {e.revision: (e.state, e.checksum) for e in status(config(project)).revisions}
    assert states == {HEAD: ("applied", "ok"), "r2": ("applied", "ok"), "r3": ("pending", None)}


def test_offline_sql_records_the_history_too(project, db_url):
    r2 = add_revision(project, "r2", HEAD, "SELECT 1")
    env = dict(project["env"])
    env.pop("DATABASE_URL")
    offline = subprocess.run(
        [sys.executable, "-m", "alembic", "upgrade", "head", "--sql"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert offline.returncode == 0, offline.stderr
    sql = offline.stdout
    assert sql.count(f"CREATE TABLE IF NOT EXISTS {HISTORY_TABLE}") == 1
    insert = f"INSERT INTO {HISTORY_TABLE} (revision, direction, duration_ms, checksum"
    assert sql.count(insert) == 2
    assert f"VALUES ('r2', 'upgrade', NULL, '{sha256(r2)}'" in sql
    # each row sits after its stamp, before its COMMIT
    stamp = sql.index("UPDATE alembic_version SET version_num='r2'")
    assert stamp < sql.index("VALUES ('r2'") < sql.index("COMMIT", stamp)

    applied = psql(db_url, sql)
    assert applied.returncode == 0, applied.stderr
    result = status(config(project))
    for entry in result.revisions:
        assert (entry.state, entry.checksum, entry.applied_by) == ("applied", "ok", "psql")
        assert entry.duration_ms is None and entry.applied_at is not None


def test_a_history_row_that_cannot_be_written_rolls_the_revision_back(project, db_url):
    with psycopg.connect(db_url) as conn:
        conn.execute(f"CREATE TABLE {HISTORY_TABLE} (id int)")  # not ours: no such columns
    with pytest.raises(CommandError) as failed:
        upgrade(project)
    assert str(failed.value).startswith(
        f"revision {HEAD} ran, but its row in {HISTORY_TABLE} could not be written (column "
        '"revision" of relation "neon_migrate_history" does not exist), so its upgrade was '
        "rolled back"
    )
    with psycopg.connect(db_url) as conn:
        assert conn.execute("SELECT to_regclass('account')").fetchone() == (None,)
        assert conn.execute("SELECT to_regclass('alembic_version')").fetchone() == (None,)


def test_history_needs_no_database(project, monkeypatch):
    monkeypatch.delenv("DATABASE_URL")
    add_revision(project, "r2", HEAD, "SELECT 1")
    code, out = run(run_history, project, as_json=False)
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split() == ["revision", "revises", "message"]
    assert lines[1].split()[:2] == [HEAD, "-"] and lines[2].split()[:2] == ["r2", HEAD]
    assert lines[2].endswith("r2 test revision (head)")
    assert lines[-1] == "2 revision(s), head(s): r2"
    code, out = run(run_history, project, as_json=True)
    report = json.loads(out)
    assert report["current"] is None and report["heads"] == ["r2"]
    assert [(r["revision"], r["state"]) for r in report["revisions"]] == [
        (HEAD, None),
        ("r2", None),
    ]


def test_an_unknown_revision_in_the_database_is_explained_everywhere(project, db_url):
    """Before: migrate exited 2 with Alembic's bare "Can't locate revision ..." and no
    Fix; status alone explained it. Now every command says what status says (exit 1)."""
    from helpers import alembic, cli

    assert cli("migrate", env=project["env"]).returncode == 0
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("UPDATE alembic_version SET version_num = 'feedbeef0000'")
    expected = "the database is at feedbeef0000, which no revision file here defines"
    for args in (["migrate"], ["migrate", "--dry-run"], ["sql", "--pending"]):
        result = cli(*args, env=project["env"])
        assert result.returncode == 1, (args, result.stdout)
        assert expected in result.stdout and "Fix: deploy the code" in result.stdout, result.stdout
    plain = alembic("upgrade", "head", env=project["env"])
    assert plain.returncode != 0 and expected in plain.stdout, plain.stdout
