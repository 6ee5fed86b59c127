"""version_table / version_table_schema: two projects sharing one database, each with its
own version table, never see each other's revision or wait for each other's lock."""

from __future__ import annotations

import json
import shutil

import psycopg
from helpers import add_revision, alembic, cli, rows

from neon_migrate.migrate.lock import LOCK_KEY, lock_key
from neon_migrate.project import VersionTable

HEAD = "f096d6eff8ee"


def second_project(project, tmp_path, schema: str | None) -> dict:
    """Project B: its own chain (one revision, its own table), its own version table."""
    root = tmp_path / "b"
    shutil.copytree(project["root"], root)
    for path in (root / "migrations" / "versions").glob("*.py"):
        path.unlink()
    b = {"root": root, "env": dict(project["env"], ALEMBIC_CONFIG=str(root / "alembic.ini"))}
    add_revision(b, "b_first", None, "CREATE TABLE b_things (id int)")
    path = root / "migrations" / "versions" / "b_first.py"
    path.write_text(path.read_text().replace('down_revision = "None"', "down_revision = None"))
    (root / "app" / "models.py").write_text(
        "from sqlalchemy import MetaData\nmetadata = MetaData()\n"
    )
    ini = root / "alembic.ini"
    options = "version_table = b_version\n" + (
        f"version_table_schema = {schema}\n" if schema else ""
    )
    ini.write_text(ini.read_text().replace("[alembic]\n", "[alembic]\n" + options, 1))
    return b


def test_two_projects_share_a_database(project, db_url, tmp_path):
    """Before: B waited for A's lock, read A's revision back as its own, verify said
    "ahead of head" and status called A's revision missing."""
    b = second_project(project, tmp_path, schema=None)
    assert cli("migrate", env=project["env"]).returncode == 0
    with psycopg.connect(db_url, autocommit=True) as holder:  # A's migration lock is held
        holder.execute("SELECT pg_advisory_lock(%s)", (LOCK_KEY,))
        result = cli("migrate", env=dict(b["env"], MIGRATION_LOCK_WAIT="0"))
    assert result.returncode == 0, result.stdout
    assert "applied 1 revision(s)" in result.stdout and "now at b_first" in result.stdout
    assert "verify: direct   ok    revision b_first (at head)" in result.stdout, result.stdout
    assert rows(db_url, "SELECT version_num FROM alembic_version") == [(HEAD,)]
    assert rows(db_url, "SELECT version_num FROM b_version") == [("b_first",)]
    status = cli("status", "--json", env=b["env"])
    assert status.returncode == 0, status.stdout
    report = json.loads(status.stdout)
    assert report["current"] == ["b_first"] and report["problems"] == []
    assert [r["revision"] for r in report["revisions"]] == ["b_first"]
    assert cli("verify", env=project["env"]).returncode == 0
    current = alembic("current", env=b["env"])
    assert "b_first" in current.stdout and HEAD not in current.stdout


def test_a_version_table_in_its_own_schema(project, db_url, tmp_path):
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("CREATE SCHEMA app_b")
    b = second_project(project, tmp_path, schema="app_b")
    result = cli("migrate", env=b["env"])
    assert result.returncode == 0, result.stdout
    assert rows(db_url, "SELECT version_num FROM app_b.b_version") == [("b_first",)]
    assert rows(db_url, "SELECT to_regclass('public.alembic_version')") == [(None,)]
    assert cli("status", env=b["env"]).returncode == 0
    check = cli("check", "--json", env=b["env"])
    report = json.loads(check.stdout)
    direct = next(c for c in report["checks"] if c["id"] == "direct")
    assert direct["details"]["revision_state"] == "at_head", direct


def test_lock_keys_differ_per_version_table():
    assert lock_key(VersionTable()) == LOCK_KEY  # the default: as older runs take it
    keys = {lock_key(VersionTable("b_version")), lock_key(VersionTable("b_version", "app_b"))}
    assert len(keys) == 2 and LOCK_KEY not in keys
    assert all(0 < key < 2**63 for key in keys)


def test_version_table_from_pyproject(tmp_path, monkeypatch):
    from neon_migrate.project import version_table

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("ALEMBIC_CONFIG", raising=False)
    (tmp_path / "pyproject.toml").write_text(
        '[tool.neon-migrate]\nversion_table = "b_version"\nversion_table_schema = "app_b"\n'
    )
    assert version_table() == VersionTable("b_version", "app_b")
    assert version_table().sql == '"app_b"."b_version"'
