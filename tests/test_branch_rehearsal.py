"""The pre-deploy check rehearses on a Neon branch: the local stand-in of Neon's API
serves the test's own database as its default branch, and branches are real copies.

Configured exactly as on Neon (NEON_API_KEY, NEON_PROJECT_ID, NEON_API_URL); faults (423,
a failed operation, a failing delete) come from the stand-in's own hook.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from helpers import ROOT, add_revision, rows, standin_server

from neon_migrate.branches.api import NeonApi
from neon_migrate.check.branch_rehearsal import PREFIX
from neon_migrate.twin.local import bundled_bin_dir
from neon_migrate.twin.standin import start_standin, stop_standin

HEAD = "f096d6eff8ee"
SCRIPT = str(ROOT / "scripts" / "predeploy_check.py")


@pytest.fixture
def branched(project, db_url, db_at_head, pg_server, tmp_path):
    """A project at head whose database is the stand-in's default branch."""
    database = db_url.rsplit("/", 1)[1]
    server = standin_server(pg_server, database)
    bin_dir = Path(os.environ.get("LOCAL_PG_BIN_DIR") or bundled_bin_dir())
    info = start_standin(tmp_path / "api", server, bin_dir, reap_interval_s=0.5)
    env = dict(project["env"], NEON_API_KEY=info.api_key, NEON_PROJECT_ID=info.project_id,
               NEON_API_URL=info.base_url)  # fmt: skip
    try:
        yield dict(project, env=env, info=info, db_url=db_url)
    finally:
        stop_standin(tmp_path / "api")


def check(env: dict, *args: str, timeout: float = 180) -> tuple[int, dict]:
    result = subprocess.run([sys.executable, SCRIPT, "--json", *args], env=env,
                            capture_output=True, text=True, timeout=timeout)  # fmt: skip
    assert "Traceback" not in result.stderr, result.stderr
    return result.returncode, json.loads(result.stdout)


def rehearsal(report: dict) -> dict:
    return next(c for c in report["checks"] if c["id"] == "rehearsal")


def api_of(b) -> NeonApi:
    return NeonApi(b["info"].base_url, b["info"].api_key, b["info"].project_id)


def branches_left(b) -> list[str]:
    with api_of(b) as api:
        return [x["name"] for x in api.branches() if x["name"].startswith(PREFIX)]


def faults(b, **what) -> None:
    headers = {"Authorization": f"Bearer {b['info'].api_key}"}
    reply = httpx.post(f"{b['info'].base_url}/_standin/faults", json=what, headers=headers)
    assert reply.status_code == 200, reply.text


def test_the_real_upgrade_runs_on_a_copy_and_the_models_are_compared(branched):
    add_revision(branched, "r2", HEAD, "ALTER TABLE account ADD COLUMN nickname text")
    code, report = check(branched["env"])
    result = rehearsal(report)
    assert result["status"] == "fail"  # the models lack the column: drift, seen on the copy
    assert "on branch neon-migrate-rehearsal-" in result["message"]
    assert "remove_column account.nickname" in result["message"]
    assert result["details"]["mode"] == "branch" and result["details"]["deleted"] is True
    assert code == 1
    columns = "SELECT column_name FROM information_schema.columns WHERE table_name = 'account'"
    assert ("nickname",) not in rows(branched["db_url"], columns)  # production untouched
    assert rows(branched["db_url"], "SELECT version_num FROM alembic_version") == [(HEAD,)]
    assert branches_left(branched) == []


@pytest.mark.slow
def test_concurrent_indexes_and_commits_are_rehearsed_for_real(branched):
    add_revision(branched, "r2", HEAD, source=(
        "    with op.get_context().autocommit_block():\n"
        "        op.execute('CREATE INDEX CONCURRENTLY ix_account_name '\n"
        "                   'ON account (display_name)')\n"
        "    op.execute('DROP INDEX ix_account_name')"))  # fmt: skip
    code, report = check(branched["env"])
    result = rehearsal(report)
    assert result["status"] == "pass", result
    assert result["details"]["rehearsed"] == ["r2"]
    assert statuses(report)["drift"] == "pass"
    assert code == 0


def statuses(report: dict) -> dict[str, str]:
    return {c["id"]: c["status"] for c in report["checks"]}


@pytest.mark.slow
def test_a_lock_that_blocks_the_app_too_long_fails_naming_revision_and_table(branched):
    add_revision(branched, "r2", HEAD, "LOCK TABLE account IN ACCESS EXCLUSIVE MODE",
                 "SELECT pg_sleep(1.5)")  # fmt: skip
    code, report = check(dict(branched["env"], CHECK_MAX_LOCK_SECONDS="1"), "--skip", "lint")
    result = rehearsal(report)
    assert result["status"] == "fail", result
    assert "r2 would hold ACCESS EXCLUSIVE on account for 1." in result["message"]
    assert "(blocks reads and writes): over CHECK_MAX_LOCK_SECONDS=1 s" in result["message"]
    [hold] = [h for h in result["details"]["locks"] if h["table"] == "account"]
    assert hold["mode"] == "AccessExclusiveLock" and 1.3 < hold["seconds"] < 5
    assert code == 1
    # under the default bound (MIGRATION_LOCK_TIMEOUT, 5 s) it passes, and says the figure
    code, report = check(branched["env"], "--skip", "lint")
    assert rehearsal(report)["status"] == "pass"
    assert "locks: r2: ACCESS EXCLUSIVE on account for 1." in rehearsal(report)["message"]


def test_a_locked_project_is_waited_for(branched):
    add_revision(branched, "r2", HEAD, "UPDATE account SET display_name = display_name")
    faults(branched, locked=2)  # the next two mutating requests answer 423 Locked
    code, report = check(branched["env"], "--skip", "drift")
    assert rehearsal(report)["status"] == "pass", rehearsal(report)
    assert code == 0


@pytest.mark.slow  # Neon may retry a failed operation: it is given a grace period
def test_a_failed_operation_is_a_clear_failure(branched):
    add_revision(branched, "r2", HEAD, "UPDATE account SET display_name = display_name")
    faults(branched, fail_operation=True)
    code, report = check(dict(branched["env"]), "--skip", "drift", timeout=240)
    result = rehearsal(report)
    assert result["status"] == "fail" and "operation" in result["message"], result
    assert "Traceback" not in result["message"]
    assert code != 0


@pytest.mark.slow
def test_a_branch_that_cannot_be_deleted_is_reported(branched):
    add_revision(branched, "r2", HEAD, "UPDATE account SET display_name = display_name")
    faults(branched, fail_delete=True, fail_delete_status=409)  # refused: not asked again
    code, report = check(branched["env"], "--skip", "drift")
    result = rehearsal(report)
    assert result["status"] == "warn", result
    assert f"branch {result['details']['branch']} was NOT deleted" in result["message"]
    assert "it expires by itself" in result["message"]
    assert code == 0


@pytest.mark.slow
def test_a_killed_check_leaves_an_expiring_branch_the_next_check_names(branched):
    add_revision(branched, "r2", HEAD, "SELECT pg_sleep(60)")
    run = subprocess.Popen([sys.executable, SCRIPT, "--skip", "lint"], env=branched["env"],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                           start_new_session=True)  # fmt: skip
    deadline = time.monotonic() + 60
    while not branches_left(branched):
        assert time.monotonic() < deadline and run.poll() is None
        time.sleep(0.2)
    time.sleep(1)
    os.killpg(run.pid, signal.SIGKILL)  # the check and its upgrade, mid-rehearsal
    run.wait()
    [stale] = branches_left(branched)
    with NeonApi(
        branched["info"].base_url, branched["info"].api_key, branched["info"].project_id
    ) as api:
        [branch] = [b for b in api.branches() if b["name"] == stale]
    assert branch["expires_at"]  # the safety net: Neon deletes it by itself
    (branched["root"] / "migrations" / "versions" / "r2.py").unlink()
    add_revision(branched, "r3", HEAD, "UPDATE account SET display_name = display_name")
    _, report = check(branched["env"], "--skip", "drift")
    result = rehearsal(report)
    assert result["status"] == "warn" and stale in result["message"], result
    assert "stale rehearsal branch" in result["message"]


def test_the_workflow_checks_production_on_a_branch():
    from neon_migrate.commands.scaffold import template

    workflow = template("database.yml")
    job = workflow[workflow.index("  check-production:") : workflow.index("  deploy:")]
    assert "NEON_API_KEY: ${{ secrets.NEON_API_KEY }}" in job
    assert "NEON_PROJECT_ID: ${{ vars.NEON_PROJECT_ID }}" in job
    assert "neon-migrate check --json" in job


@pytest.mark.slow
def test_a_failing_rehearsal_still_says_the_branch_was_not_deleted(branched):
    add_revision(branched, "r2", HEAD, "SELECT no_such_function()")
    faults(branched, fail_delete=True, fail_delete_status=409)  # refused: not asked again
    code, report = check(branched["env"], "--skip", "lint")
    result = rehearsal(report)
    assert result["status"] == "fail" and "a real run would fail" in result["message"]
    assert "was NOT deleted" in result["message"], result
    assert code == 1


def test_revisions_are_followed_whatever_the_projects_log_format(branched):
    """The project's alembic.ini formats log lines its own way (Alembic's stock formatter
    adds a level and a logger name): the rehearsal does not read them."""
    ini = branched["root"] / "alembic.ini"
    stock = "format = %(levelname)-5.5s [%(name)s] %(message)s"
    ini.write_text(ini.read_text().replace("format = %(message)s", stock))
    add_revision(branched, "r2", HEAD, "LOCK TABLE account IN ACCESS EXCLUSIVE MODE",
                 "SELECT pg_sleep(0.3)")  # fmt: skip
    _, report = check(branched["env"], "--skip", "lint")
    result = rehearsal(report)
    assert result["status"] == "pass", result
    assert result["details"]["rehearsed"] == ["r2"]
    assert any(h["table"] == "account" for h in result["details"]["locks"])


def test_the_lock_sampler_never_shows_the_branch_password():
    from neon_migrate.check.locks import LockSampler

    assert "S3cret" not in repr(LockSampler("postgresql://u:S3cret@127.0.0.1:1/db"))
