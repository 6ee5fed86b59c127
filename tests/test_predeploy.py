"""The pre-deploy check on a real server: every check passing and failing, the exit codes,
the JSON shape, and proof that a full check leaves the database exactly as it was."""

from __future__ import annotations

import json
import subprocess
import sys

import psycopg
import pytest
from helpers import ROOT, add_revision, alembic
from proxy import FaultProxy

from neon_migrate.check.lint import own_rules
from neon_migrate.check.plan import PlannedRevision
from neon_migrate.twin.local import bundled_bin_dir

HEAD = "f096d6eff8ee"
SCRIPT = str(ROOT / "scripts" / "predeploy_check.py")


def check(env: dict, *args: str) -> tuple[int, dict]:
    result = subprocess.run(
        [sys.executable, SCRIPT, "--json", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert "Traceback" not in result.stderr, result.stderr
    return result.returncode, json.loads(result.stdout)


def statuses(report: dict) -> dict[str, str]:
    return {c["id"]: c["status"] for c in report["checks"]}


def message(report: dict, check_id: str) -> str:
    return next(c["message"] for c in report["checks"] if c["id"] == check_id)


def sql(url: str, *statements: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        for statement in statements:
            conn.execute(statement)


@pytest.fixture
def at_head(project, db_at_head):
    return project


def test_safe_to_ship_at_head(at_head):
    code, report = check(at_head["env"])
    assert code == 0, report
    assert report["ok"] is True
    assert statuses(report) == dict.fromkeys(
        [
            "config",
            "direct",
            "pooled",
            "scripts",
            "revision",
            "validate",
            "plan",
            "lint",
            "rehearsal",
            "drift",
        ],
        "pass",
    )
    assert message(report, "plan") == f"nothing to apply: at head {HEAD}"
    assert message(report, "drift") == "the models match the database"


def test_json_shape_is_the_documented_one(at_head):
    _, report = check(at_head["env"])
    assert set(report) == {
        "schema",
        "ok",
        "exit_code",
        "target",
        "checks",
        "plan",
        "lint",
        "pools",
        "timings",
    }
    assert report["schema"] == "neon-migrate/predeploy/v1"
    for item in report["checks"]:
        assert set(item) == {"id", "status", "message", "duration_ms", "details"}
        assert item["status"] in {"pass", "warn", "fail", "skip"}
    assert set(report["plan"]) == {"current", "heads", "pending"}
    assert report["plan"]["heads"] == [HEAD]
    assert report["timings"]["total_ms"] >= report["timings"]["drift"]
    direct = next(item for item in report["checks"] if item["id"] == "direct")["details"]
    assert direct["endpoint"] == "direct" and direct["revision_state"] == "at_head"
    assert direct["revisions"] == [HEAD] and direct["latency_ms"] > 0
    pooled = next(item for item in report["checks"] if item["id"] == "pooled")["details"]
    assert pooled["endpoint"] == "pooled" and pooled["host"] == direct["host"]  # one URL
    (migrations,) = report["pools"]  # the run's only engine: drift's, on the direct door
    assert migrations["name"] == "migrations" and migrations["checkouts"] >= 1


def test_pending_revisions_are_planned_linted_and_rehearsed(project, db_url):
    add_revision(project, "r2", HEAD, "ALTER TABLE account ADD COLUMN nickname text")
    (project["root"] / "migrations" / "versions" / "r2.py").write_text(
        (project["root"] / "migrations" / "versions" / "r2.py").read_text()
    )
    code, report = check(project["env"])
    assert statuses(report)["plan"] == "pass"
    pending = report["plan"]["pending"]
    assert [p["revision"] for p in pending] == [HEAD, "r2"]
    assert "CREATE TABLE account" in pending[0]["sql"]
    assert "ALTER TABLE account ADD COLUMN nickname text" in pending[1]["sql"]
    assert "SET LOCAL lock_timeout" in pending[1]["sql"]
    # r2 applies cleanly, rolled back at once: no branch here, so the models are not
    # compared while production's table is locked (the branch tests compare them)
    assert statuses(report)["rehearsal"] == "pass"
    assert message(report, "rehearsal").startswith("2 revision(s) would apply cleanly (on "
                                                   "production, rolled back")  # fmt: skip
    assert "NEON_API_KEY" in message(report, "rehearsal")
    assert statuses(report)["drift"] == "skip"
    assert "compared with the result on a branch only" in message(report, "drift")
    assert code == 0


def test_unknown_database_revision_means_an_old_build(at_head, db_url):
    sql(db_url, "UPDATE alembic_version SET version_num = 'f00dcafe1234'")
    code, report = check(at_head["env"])
    assert code == 1
    assert statuses(report)["revision"] == "fail"
    assert "the database is at f00dcafe1234, which these scripts do not know" in message(
        report, "revision"
    )
    assert statuses(report)["plan"] == "skip"


def test_two_heads_fail_the_scripts_check(at_head):
    add_revision(at_head, "branch_a", HEAD, "SELECT 1")
    add_revision(at_head, "branch_b", HEAD, "SELECT 2")
    code, report = check(at_head["env"], "--only", "scripts")
    assert code == 1
    assert message(report, "scripts").startswith("2 heads (branch_a, branch_b)")
    assert report["plan"]["heads"] == ["branch_a", "branch_b"]


def test_a_file_that_does_not_import_fails_the_scripts(at_head):
    broken = at_head["root"] / "migrations" / "versions" / "broken.py"
    broken.write_text("import no_such_module\n")
    code, report = check(at_head["env"], "--only", "scripts")
    assert code == 1
    assert "broken.py does not import: ModuleNotFoundError" in message(report, "scripts")


def test_an_undone_downgrade_warns_and_hides_nothing(at_head):
    """A `pass` downgrade is a warning, a merge's is normal, a marked one is fine; the
    checks after `scripts` still run and give their own answers."""
    lazy = add_revision(at_head, "lazy", HEAD, "SELECT 1")
    lazy.write_text(lazy.read_text().replace(
        "raise NotImplementedError('irreversible: a test revision')", "pass"))  # fmt: skip
    other = add_revision(at_head, "other", HEAD, "SELECT 2")
    other.write_text(other.read_text().replace(
        "    raise NotImplementedError('irreversible: a test revision')",
        "    # irreversible: the old rows are gone\n    pass"))  # fmt: skip
    merge = add_revision(at_head, "merge", "PLACEHOLDER")
    merge.write_text(merge.read_text().replace('"PLACEHOLDER"', '("lazy", "other")').replace(
        "raise NotImplementedError('irreversible: a test revision')", "pass"))  # fmt: skip
    code, report = check(at_head["env"])
    assert code == 0, report
    assert statuses(report)["scripts"] == "warn"
    text = message(report, "scripts")
    assert "downgrade() does nothing and is not marked irreversible in lazy:" in text
    assert "other" not in text.split("in lazy")[1] and "merge" not in text.split("in lazy")[1]
    assert {statuses(report)[c] for c in ("plan", "lint", "rehearsal")} <= {"pass", "warn"}


def test_dangerous_migration_is_caught_by_lint(at_head):
    add_revision(at_head, "r2", HEAD, "ALTER TABLE project DROP COLUMN description")
    code, report = check(at_head["env"], "--only", "lint")
    assert code == 1
    assert statuses(report)["lint"] == "fail"
    finding = next(f for f in report["lint"] if f["rule"] == "ban-drop-column")
    assert finding == finding | {
        "revision": "r2",
        "severity": "fail",
        "waived": False,
        "source": "squawk",
    }


def test_reviewed_waiver_is_honoured(at_head):
    path = add_revision(at_head, "r2", HEAD, "ALTER TABLE project DROP COLUMN description")
    path.write_text(
        path.read_text() + "\n# predeploy: allow ban-drop-column -- unused since "
        "v12, reviewed in PR 481\n"
    )
    code, report = check(at_head["env"], "--only", "lint")
    finding = next(f for f in report["lint"] if f["rule"] == "ban-drop-column")
    assert finding["waived"] is True
    assert finding["waiver_reason"] == "unused since v12, reviewed in PR 481"
    assert statuses(report)["lint"] in ("pass", "warn")
    assert code == 0


def test_waiver_without_a_reason_is_not_a_waiver(at_head):
    path = add_revision(at_head, "r2", HEAD, "ALTER TABLE project DROP COLUMN description")
    path.write_text(path.read_text() + "\n# predeploy: allow ban-drop-column\n")
    code, report = check(at_head["env"], "--only", "lint")
    assert code == 1
    assert not next(f for f in report["lint"] if f["rule"] == "ban-drop-column")["waived"]


def test_concurrently_outside_autocommit_block_and_data_with_schema(at_head):
    add_revision(
        at_head,
        "r2",
        HEAD,
        "CREATE INDEX CONCURRENTLY ix_account_name ON account (display_name)",
        "UPDATE account SET display_name = lower(display_name)",
    )
    code, report = check(at_head["env"], "--only", "lint")
    rules = {f["rule"]: f for f in report["lint"]}
    assert rules["concurrently-in-transaction"]["severity"] == "fail"
    assert rules["data-and-schema"]["severity"] == "warn"
    assert code == 1


def test_autocommit_block_is_not_rehearsed_but_said_so(at_head):
    add_revision(
        at_head,
        "r2",
        HEAD,
        source=(
            "    with op.get_context().autocommit_block():\n"
            "        op.execute('CREATE INDEX CONCURRENTLY ix_account_name ON account "
            "(display_name)')"
        ),
    )
    _code, report = check(at_head["env"])
    assert "concurrently-in-transaction" not in {f["rule"] for f in report["lint"]}
    assert statuses(report)["rehearsal"] == "warn"
    assert (
        "from r2 on (it uses autocommit_block: it cannot run in the rehearsal's one "
        "transaction), 1 not rehearsed: r2" in message(report, "rehearsal")
    )


def test_big_table_exclusive_lock_needs_a_waiver(at_head, db_url):
    sql(
        db_url,
        "CREATE TABLE events (id bigint)",
        "INSERT INTO events SELECT generate_series(1, 120000)",
        "ANALYZE events",
    )
    add_revision(at_head, "r2", HEAD, "ALTER TABLE events ADD CONSTRAINT pos CHECK (id > 0)")
    code, report = check(at_head["env"], "--only", "lint")
    finding = next(f for f in report["lint"] if f["rule"] == "big-table-exclusive-lock")
    assert "events (~120,000 rows)" in finding["message"]
    assert code == 1


def test_rehearsal_that_fails_like_a_real_run_would(at_head, db_url):
    sql(db_url, "INSERT INTO account (email, display_name) VALUES ('a@example.com', 'A')")
    add_revision(at_head, "r2", HEAD, "ALTER TABLE account ADD COLUMN plan text NOT NULL")
    code, report = check(at_head["env"], "--skip", "lint")
    assert code == 1
    text = message(report, "rehearsal")
    assert text.startswith("a real run would fail: revision r2 (r2 test revision) failed")
    assert 'column "plan" of relation "account" contains null values' in text
    assert report["checks"][-2]["details"]["unchanged"] is True


def test_drift_from_a_manual_alter_table(at_head, db_url):
    sql(db_url, "ALTER TABLE account ADD COLUMN added_by_hand int")
    code, report = check(at_head["env"])
    assert code == 1
    assert statuses(report)["drift"] == "fail"
    assert "remove_column account.added_by_hand" in message(report, "drift")


def dump(url: str) -> str:
    """Schema and data, as pg_dump writes them: byte-for-byte comparable."""
    return subprocess.run(
        # a fixed key: pg_dump 18 otherwise writes a random one into every dump
        [str(bundled_bin_dir() / "pg_dump"), "--restrict-key=predeploycheck", url],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout


def test_a_full_check_leaves_the_database_byte_for_byte_unchanged(at_head, db_url):
    sql(db_url, "INSERT INTO account (email, display_name) VALUES ('a@example.com', 'A')")
    add_revision(
        at_head,
        "r2",
        HEAD,
        "CREATE TABLE audit (id int)",
        "INSERT INTO audit VALUES (1)",
        "ALTER TABLE account ADD COLUMN nick text",
    )
    before = dump(db_url)
    _code, report = check(at_head["env"])
    assert statuses(report)["rehearsal"] in ("pass", "fail")  # it ran: the proof is below
    assert report["checks"][-2]["details"]["rehearsed"] == ["r2"]
    assert dump(db_url) == before


def test_configuration_errors_exit_2(at_head, db_url):
    remote = db_url.replace("@127.0.0.1:", "@db.example.test:") + "?hostaddr=127.0.0.1"
    code, report = check(dict(at_head["env"], DATABASE_URL=remote + "&sslmode=disable"))
    assert code == 2
    assert "DATABASE_URL has sslmode=disable: use require or verify-full" in message(
        report, "config"
    )
    usage = subprocess.run(
        [sys.executable, SCRIPT, "--only", "nonsense"],
        env=at_head["env"],
        capture_output=True,
        text=True,
    )
    assert usage.returncode == 2
    assert "unknown check id(s): nonsense" in usage.stderr


def test_unreachable_endpoint_exits_3(at_head):
    env = dict(
        at_head["env"],
        DATABASE_URL="postgresql://u:pw@127.0.0.1:1/db",
        DB_CONNECT_RETRY_SECONDS="1",
    )
    code, report = check(env)
    assert code == 3
    assert statuses(report)["direct"] == "fail"
    assert statuses(report)["revision"] == "skip"


def test_table_output_for_people(at_head):
    add_revision(at_head, "r2", HEAD, "ALTER TABLE project DROP COLUMN description")
    result = subprocess.run(
        [sys.executable, SCRIPT], env=at_head["env"], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 1
    out = result.stdout
    assert "\033[" not in out  # no colour when not on a terminal
    assert "plan: 1 revision(s) to apply, in order" in out
    assert "FAIL   r2 ban-drop-column" in out
    assert "# predeploy: allow <rule> -- <reason>" in out
    assert "rehearsal  SKIP" in out and "not run on production: lint found" in out
    assert out.strip().splitlines()[-1].startswith("NOT SAFE: lint (exit 1,")


def test_missing_lock_timeout_when_env_py_is_bypassed():
    """SQL that did not come through our env.py: a transaction with no lock_timeout."""
    bypassed = PlannedRevision(
        "r9", "raw", ROOT / "x.py", "BEGIN;\n\nALTER TABLE t ADD COLUMN c int;\n\nCOMMIT;\n", ""
    )
    findings = own_rules(bypassed, lambda table: None, 100_000)
    assert [f.rule for f in findings] == ["missing-lock-timeout"]
    assert findings[0].severity == "fail"


def test_a_revision_that_drops_the_history_table_is_named_as_such(at_head):
    """What autogenerate writes from an env.py that does not know the harness: the check
    names the lost record of applied revisions, with the include_object line that stops it."""
    add_revision(at_head, "r2", HEAD, source="    op.drop_table('neon_migrate_history')")
    code, report = check(at_head["env"])
    assert code == 1, report
    lint = message(report, "lint")
    named = "r2 drops-history-table: drops the record of applied revisions (neon_migrate_history)"
    assert lint.split(": ", 1)[1].startswith(named), lint
    finding = next(f for f in report["lint"] if f["rule"] == "drops-history-table")
    assert finding["severity"] == "fail" and finding["source"] == "harness"
    assert "include_object=lambda obj, name, type_, reflected, compare_to: " in finding["message"]
    assert report["ok"] is False


def test_creating_and_writing_the_history_table_is_not_a_drop():
    """Every revision the harness renders creates (IF NOT EXISTS) and writes the table."""
    rendered = PlannedRevision("r9", "ours", ROOT / "x.py", (
        "BEGIN;\nSET LOCAL lock_timeout = '5000ms';\n"
        "CREATE TABLE IF NOT EXISTS neon_migrate_history (id bigserial PRIMARY KEY);\n"
        "INSERT INTO neon_migrate_history (revision) VALUES ('r9');\n"
        "DROP TABLE IF EXISTS neon_migrate_history_old;\nCOMMIT;\n"
    ), "")  # fmt: skip
    assert [f.rule for f in own_rules(rendered, lambda table: None, 100_000)] == []


def test_a_commit_inside_a_multi_statement_string_is_refused_too(at_head, db_url):
    """`op.execute("UPDATE ...; COMMIT")` would make the rest of the rehearsal real."""
    add_revision(at_head, "r2", HEAD, "CREATE TABLE leak (id int); COMMIT",
                 "CREATE TABLE after_commit (id int)")  # fmt: skip
    code, report = check(at_head["env"], "--skip", "lint")
    assert statuses(report)["rehearsal"] == "warn", report
    assert "from r2 on (it runs COMMIT itself" in message(report, "rehearsal")
    with psycopg.connect(db_url) as conn:
        assert conn.execute("SELECT to_regclass('leak'), to_regclass('after_commit')"
                            ).fetchone() == (None, None)  # fmt: skip
    assert code == 0


def test_lint_failure_keeps_the_rehearsal_off_production(at_head, db_url):
    add_revision(at_head, "r2", HEAD, "ALTER TABLE project DROP COLUMN description")
    code, report = check(at_head["env"])
    assert statuses(report)["lint"] == "fail"
    assert statuses(report)["rehearsal"] == "skip"
    assert message(report, "rehearsal").startswith("not run on production: lint found")
    assert code == 1


def test_a_revision_that_commits_is_refused_by_the_rehearsal(at_head, db_url):
    """Its COMMIT would make the rest of the rehearsal real: it is not run, and said so."""
    add_revision(at_head, "r2", HEAD, "CREATE TABLE leak (id int)", "COMMIT",
                 "CREATE TABLE after_commit (id int)")  # fmt: skip
    code, report = check(at_head["env"], "--skip", "lint")
    assert statuses(report)["rehearsal"] == "warn", report
    assert (
        "from r2 on (it runs COMMIT itself: it cannot run in the rehearsal's one "
        "transaction), 1 not rehearsed: r2" in message(report, "rehearsal")
    )
    with psycopg.connect(db_url) as conn:
        assert conn.execute("SELECT to_regclass('leak'), to_regclass('after_commit')"
                            ).fetchone() == (None, None)  # fmt: skip
    assert code == 0


def test_a_broken_squawk_config_fails_the_lint_instead_of_passing_it(at_head):
    add_revision(at_head, "r2", HEAD, "ALTER TABLE project DROP COLUMN description")
    (at_head["root"] / ".squawk.toml").write_text('excluded_rules = ["oops"\n')
    code, report = check(at_head["env"], "--only", "lint")
    assert code == 1
    assert message(report, "lint").startswith("squawk could not lint the SQL")


def test_skipping_a_prerequisite_is_a_usage_error(at_head):
    result = subprocess.run([sys.executable, SCRIPT, "--skip", "direct"], env=at_head["env"],
                            capture_output=True, text=True)  # fmt: skip
    assert result.returncode == 2
    assert "--skip direct leaves revision without what it needs" in result.stderr


def test_a_broken_revision_graph_fails_the_scripts_check(at_head):
    add_revision(at_head, "orphan", "no_such_revision", "SELECT 1")
    code, report = check(at_head["env"], "--only", "scripts")
    assert code == 1
    assert message(report, "scripts").startswith("the revision graph is broken")


def test_lint_lines_and_statements_sqlparse_sees(at_head):
    path = add_revision(at_head, "r2", HEAD, source=(
        "    op.execute(\"UPDATE account SET display_name = 'x'; "
        "ALTER TABLE account DROP COLUMN display_name\")"))  # fmt: skip
    code, report = check(at_head["env"], "--only", "lint")
    sql = report["plan"]["pending"][0]["sql"].splitlines()
    finding = next(f for f in report["lint"] if f["rule"] == "ban-drop-column")
    assert "DROP COLUMN" in sql[finding["line"] - 1]  # 1-based, as ours
    assert "data-and-schema" in {f["rule"] for f in report["lint"]}  # two on one line
    assert path.exists() and code == 1


def test_a_function_body_is_one_statement():
    sql = ("BEGIN;\n\nSET LOCAL lock_timeout = '5000ms';\n\nCREATE FUNCTION f() RETURNS void "
           "AS $$ BEGIN DELETE FROM t; COMMIT; END $$ LANGUAGE plpgsql;\n\n"
           "CREATE INDEX CONCURRENTLY ix ON t (a);\n\nCOMMIT;\n")  # fmt: skip
    revision = PlannedRevision("r9", "fn", ROOT / "x.py", sql, "")
    rules = [f.rule for f in own_rules(revision, lambda table: None, 100_000)]
    assert rules == ["concurrently-in-transaction"]  # not fooled by the body's COMMIT


def test_the_check_opens_one_working_connection_whatever_lint_looks_up(project, pg_server):
    """Lint looked up each table on a new connection (a TLS handshake each on Neon); the
    check now shares one direct connection for lint, rehearsal and drift."""
    assert alembic("upgrade", "head", env=project["env"]).returncode == 0
    down = HEAD
    for i in range(12):
        add_revision(project, f"t{i}", down, f"CREATE TABLE t{i} (id int)",
                     f"ALTER TABLE t{i} ADD COLUMN v int")  # fmt: skip
        down = f"t{i}"
    proxy = FaultProxy(pg_server.port)
    try:
        url = project["env"]["DATABASE_URL"].replace(f":{pg_server.port}/", f":{proxy.port}/")
        _, report = check(dict(project["env"], DATABASE_URL=url), "--skip", "drift")
    finally:
        proxy.close()
    assert statuses(report)["lint"] in ("pass", "warn"), report
    # direct health, pooled health (the same URL here), the one shared connection, and
    # the rehearsal's lock guard (its own session, so it can end the rehearsal's)
    assert proxy.connections == 4, report
