"""The harness on a realistic chain (tests/corpus): 62 revisions written the way large
projects write them, with concurrent indexes, a revision that commits itself, data
migrations that read rows, a batched backfill, a fork with a branch label and a merge,
irreversible revisions, their own SETs, an enum, extensions, `%` and `\\:` in SQL, and a
versions/__init__.py. See tests/corpus/features.py for which revision does what.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest
from helpers import CLI, ROOT, alembic, cli, psql, rows, schema

from neon_migrate.migrate.heads import alembic_graph, quick_graph

sys.path.insert(0, str(ROOT / "tests" / "corpus"))
from features import FEATURE_REVISIONS, HEAD, REVISION_COUNT

ONLINE_ONLY = {"2c49ab5e02ae", "9805007acda1", "68ac0b3f28e4"}


@pytest.fixture
def corpus(tmp_path: Path, harness_env: dict) -> dict:
    root = tmp_path / "corpus"
    shutil.copytree(ROOT / "tests" / "corpus", root, symlinks=False,
                    ignore=shutil.ignore_patterns("__pycache__"))  # fmt: skip
    return {"root": root, "env": dict(harness_env, ALEMBIC_CONFIG=str(root / "alembic.ini"))}


def fresh_database(pg_server, name: str) -> str:
    with psycopg.connect(pg_server.url("postgres"), autocommit=True) as admin:
        admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        admin.execute(f"CREATE DATABASE {name}")
    return pg_server.url(name)


def drop_database(pg_server, name: str) -> None:
    with psycopg.connect(pg_server.url("postgres"), autocommit=True) as admin:
        admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def check(env: dict) -> tuple[int, dict]:
    result = subprocess.run([*CLI, "check", "--json"], env=env,
                            capture_output=True, text=True, timeout=300)  # fmt: skip
    assert "Traceback" not in result.stderr, result.stderr
    return result.returncode, json.loads(result.stdout)


def test_quick_heads_read_the_corpus_as_alembic_does(corpus):
    """A versions/__init__.py, a fork and a merge: the quick reader still answers."""
    ini = corpus["root"] / "alembic.ini"
    assert quick_graph(ini, None) == alembic_graph(ini, None)
    assert quick_graph(ini, None)[1] == (HEAD,)


def test_make_migrate_applies_the_corpus_and_verifies(corpus, db_url):
    result = cli("migrate", env=corpus["env"])
    assert result.returncode == 0, result.stdout
    assert f"applied {REVISION_COUNT} revision(s)" in result.stdout
    assert "verify: direct   ok" in result.stdout and "verify: pooled   ok" in result.stdout
    assert rows(db_url, "SELECT version_num FROM alembic_version") == [(HEAD,)]
    # the name the models' convention gives an unnamed foreign key, as a rehearsal would
    fk = rows(db_url, "SELECT conname FROM pg_constraint WHERE conname LIKE 'fk_invoice_org%'")
    assert fk == [("fk_invoice_organization_id_organization",)]
    assert rows(db_url, "SELECT count(*) FROM pg_index WHERE NOT indisvalid") == [(0,)]
    drift = alembic("check", env=corpus["env"])
    assert drift.returncode == 0 and "No new upgrade operations detected" in drift.stdout
    again = cli("migrate", env=corpus["env"])
    assert f"already at head ({HEAD})" in again.stdout, again.stdout


@pytest.mark.slow
def test_eight_concurrent_upgrades_on_a_fresh_database(corpus, db_url):
    """One run applies the chain, seven wait for the lock outside any transaction, so the
    holder's CREATE INDEX CONCURRENTLY never waits for them (a deadlock before)."""
    env = dict(corpus["env"], MIGRATION_LOCK_WAIT="240")
    runs = [
        subprocess.Popen([sys.executable, "-m", "alembic", "upgrade", "head"], env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for _ in range(8)
    ]  # fmt: skip
    outputs = [run.communicate(timeout=300)[0] for run in runs]
    assert [run.returncode for run in runs] == [0] * 8, "\n----\n".join(outputs)
    joined = "\n".join(outputs)
    assert "deadlock" not in joined
    for revision in FEATURE_REVISIONS["concurrent_index_create"]:
        assert joined.count(f"applied  {revision}") == 1, revision
    assert sum(out.count("applied  ") for out in outputs) == REVISION_COUNT
    assert rows(db_url, "SELECT version_num FROM alembic_version") == [(HEAD,)]
    assert rows(db_url, "SELECT count(*) FROM pg_index WHERE NOT indisvalid") == [(0,)]


@pytest.mark.slow
def test_check_passes_with_everything_pending_and_at_head(corpus):
    code, report = check(corpus["env"])
    status = {c["id"]: c for c in report["checks"]}
    assert code == 0, json.dumps(report["checks"], indent=1)
    # two real revisions with a `pass` downgrade and no word on it: warned, nothing hidden
    assert status["scripts"]["status"] == "warn", status["scripts"]
    assert status["scripts"]["details"]["no_downgrade"] == ["8048aa8fb792", "9805007acda1"]
    assert status["lint"]["status"] == "warn"  # the dangerous ones carry reviewed waivers
    assert status["plan"]["status"] == "warn"
    assert set(status["plan"]["details"]["online_only"]) == ONLINE_ONLY
    assert status["rehearsal"]["status"] == "warn"  # stops at the first autocommit_block
    assert cli("migrate", env=corpus["env"]).returncode == 0
    code, report = check(corpus["env"])
    assert code == 0, json.dumps(report["checks"], indent=1)
    assert {c["id"]: c["status"] for c in report["checks"]} == dict.fromkeys(
        ["config", "direct", "pooled", "revision", "validate", "plan", "lint", "rehearsal",
         "drift"],
        "pass") | {"scripts": "warn"}  # fmt: skip


def test_sql_marks_online_only_revisions_and_psql_stops_at_the_first(corpus, db_url, pg_server):
    """`make sql` renders the chain, marks the three revisions that only run online, names
    them on stderr and exits 1; psql applies up to the first, `make migrate` does the rest,
    and the result equals a database migrated online from the start."""
    env = dict(corpus["env"])
    env.pop("DATABASE_URL")
    offline = subprocess.run([sys.executable, "-m", "alembic", "upgrade", "head", "--sql"],
                             env=env, capture_output=True, text=True, timeout=120)  # fmt: skip
    assert offline.returncode == 1
    assert "Traceback" not in offline.stderr and "FAILED" not in offline.stdout
    assert offline.stderr.strip().startswith("FAILED: 3 revision(s) cannot be rendered as SQL")
    for revision in ONLINE_ONLY:
        assert f"-- revision {revision}" in offline.stdout
        assert revision in offline.stderr
    applied = psql(db_url, offline.stdout)
    assert applied.returncode == 3, applied.stderr  # psql's code for an error in a script
    first = "2c49ab5e02ae"
    assert f"revision {first} cannot run from offline SQL" in applied.stderr
    assert rows(db_url, "SELECT version_num FROM alembic_version") != [(HEAD,)]
    finish = cli("migrate", env=corpus["env"])
    assert finish.returncode == 0, finish.stdout
    online_url = fresh_database(pg_server, "corpus_online")
    try:
        online = cli("migrate", env=dict(corpus["env"], DATABASE_URL=online_url))
        assert online.returncode == 0, online.stdout
        assert schema(db_url) == schema(online_url)
        data = "SELECT code, description FROM plan ORDER BY code"
        assert rows(db_url, data) == rows(online_url, data)
        assert any("%" in (description or "") for _, description in rows(db_url, data))
    finally:
        drop_database(pg_server, "corpus_online")
