"""Neon's API past the happy path, each behaviour imitated by the stand-in and met by the
branch rehearsal: the branch limit, 204 on a repeated DELETE, operations in `error`, a
creation whose answer was lost, pages of branches, 412 from connection_uri, the compute
size, compare_schema, and 429 with Retry-After. Switches: the stand-in's test hook."""

# ruff: noqa: F811  (`branched`, the branch rehearsal tests' fixture, is used by name)

from __future__ import annotations

import json
import subprocess
import sys
import time

import httpx
import pytest
from helpers import add_revision, expires_in
from test_branch_rehearsal import (  # noqa: F401  (branched: a fixture)
    HEAD,
    SCRIPT,
    api_of,
    branched,
    branches_left,
    check,
    faults,
    rehearsal,
)

from neon_migrate.branches.api import NeonApiError
from neon_migrate.check.branch_rehearsal import ANNOTATION, PREFIX
from neon_migrate.errors import UnreachableError


def standin_state(b) -> dict:
    headers = {"Authorization": f"Bearer {b['info'].api_key}"}
    return httpx.get(f"{b['info'].base_url}/_standin/faults", headers=headers).json()["neon"]


def parent_of(api) -> str:
    return api.endpoint_for_host("127.0.0.1")[1]


def make(api, name: str, ours: bool) -> str:
    created = api.create_branch(parent_of(api), name, expires_in(7200),
                                annotation=ANNOTATION if ours else None)  # fmt: skip
    api.wait_for_operations(created.operation_ids, 60)
    return created.branch_id


@pytest.mark.slow
def test_at_the_branch_limit_our_stale_branches_go_and_nobody_elses(branched):
    add_revision(branched, "r2", HEAD, "UPDATE account SET display_name = display_name")
    with api_of(branched) as api:
        killed = make(api, f"{PREFIX}20260101-000000-aaaaaa", ours=True)
        lookalike = make(api, f"{PREFIX}20260101-000000-bbbbbb", ours=False)  # not marked
        for branch_id in (killed, lookalike):
            faults(branched, backdate={"id": branch_id, "seconds": 7200})
    faults(branched, branch_limit=3)  # main, and those two: full
    code, report = check(branched["env"], "--skip", "drift")
    result = rehearsal(report)
    assert result["status"] == "warn", result  # the look-alike is named, not deleted
    assert result["details"]["stale_deleted"] == [f"{PREFIX}20260101-000000-aaaaaa"]
    assert f"{PREFIX}20260101-000000-bbbbbb" in result["message"]
    assert branches_left(branched) == [f"{PREFIX}20260101-000000-bbbbbb"]
    assert code == 0
    faults(branched, branch_limit=2)  # full again, with nothing of ours to clear
    code, report = check(branched["env"], "--skip", "drift")
    message = rehearsal(report)["message"]
    assert message.startswith(f"the Neon project {branched['info'].project_id} is at its "
                              "plan's branch limit (HTTP 422: branches limit exceeded")  # fmt: skip
    assert "Fix: delete branches you no longer need in the Neon console" in message
    assert (
        "branches named as rehearsals still there (deleted by the check only when marked as "
        f"its own and over 55 min old): {PREFIX}20260101-000000-bbbbbb" in message
    )
    assert "\n" not in message and code == 1


@pytest.mark.slow
def test_a_repeated_delete_answers_204_and_the_branch_counts_as_deleted(branched):
    with api_of(branched) as api:
        branch_id = make(api, "twice", ours=False)
        assert api.delete_branch(branch_id) is True
        assert api.delete_branch(branch_id) is False  # 204, no body: already gone
    add_revision(branched, "r2", HEAD, "UPDATE account SET display_name = display_name")
    faults(branched, delete_then_fail=1)  # deleted, then the answer is lost (500)
    code, report = check(branched["env"], "--skip", "drift")
    result = rehearsal(report)
    assert result["status"] == "pass", result
    assert result["details"]["deleted"] is True and "NOT deleted" not in result["message"]
    assert branches_left(branched) == [] and code == 0


def test_an_operation_in_error_ends_the_wait_at_once(branched):
    faults(branched, error_operation=1)
    with api_of(branched) as api:
        created = api.create_branch(parent_of(api), "errs", expires_in(600))
        started = time.monotonic()
        with pytest.raises(NeonApiError, match=r"\(create_branch\) ended in error"):
            api.wait_for_operations(created.operation_ids, 300)
        assert time.monotonic() - started < 10  # not the 300 s deadline, nor failed's grace


@pytest.mark.slow
@pytest.mark.parametrize("status", [524, 502])
def test_a_lost_creation_answer_never_leaves_a_second_branch(branched, status):
    add_revision(branched, "r2", HEAD, "UPDATE account SET display_name = display_name")
    faults(branched, lost_create={"count": 1, "status": status})  # created, answer lost
    code, report = check(branched["env"], "--skip", "drift")
    result = rehearsal(report)
    assert result["status"] == "pass", result
    assert branches_left(branched) == [] and code == 0  # the one made was found and deleted


def test_every_page_of_branches_is_read(branched):
    with api_of(branched) as api:
        made = [make(api, f"paged-{i}", ours=False) for i in range(3)]
        faults(branched, page_size=1)
        before = standin_state(branched)["requests"]
        listed = api.branches()
        assert {b["id"] for b in listed} >= set(made) and len(listed) == 4
        assert standin_state(branched)["requests"] - before == 4  # one page each
        assert [b["name"] for b in api.branches(search="paged-2")] == ["paged-2"]


def test_412_from_connection_uri_is_a_configuration_error(branched):
    add_revision(branched, "r2", HEAD, "UPDATE account SET display_name = display_name")
    faults(branched, passwords_not_stored=True)
    code, report = check(branched["env"], "--skip", "drift")
    message = rehearsal(report)["message"]
    assert message.startswith("Neon does not store role passwords in project"), message
    assert "a real run would fail" not in message
    assert branches_left(branched) == [] and code == 2


@pytest.mark.slow
def test_the_rehearsal_runs_on_productions_compute_size_and_says_so(branched):
    add_revision(branched, "r2", HEAD, "LOCK TABLE account IN ACCESS EXCLUSIVE MODE",
                 "SELECT pg_sleep(1.2)")  # fmt: skip
    faults(branched, parent_compute=[1, 4])  # the project's default stays 0.25
    code, report = check(dict(branched["env"], CHECK_MAX_LOCK_SECONDS="1"), "--skip", "lint")
    result = rehearsal(report)
    asked = standin_state(branched)["last_create"]["endpoints"][0]
    assert asked["autoscaling_limit_min_cu"] == 1 and asked["autoscaling_limit_max_cu"] == 4
    assert result["details"]["compute"] == {"min_cu": 1, "max_cu": 4}
    assert "measured on a compute of 1-4 CU, as production's, with a cold cache" in (
        result["message"])  # fmt: skip
    assert code == 1


@pytest.mark.slow
def test_neons_schema_diff_is_the_reports_evidence(branched):
    add_revision(branched, "r2", HEAD, "ALTER TABLE account ADD COLUMN nickname text")
    _, report = check(branched["env"], "--skip", "lint")
    diff = rehearsal(report)["details"]["schema_diff"]
    assert "+    nickname text" in diff and diff.startswith("--- a/"), diff
    table = subprocess.run([sys.executable, SCRIPT, "--skip", "lint"], env=branched["env"],
                           capture_output=True, text=True, timeout=180).stdout  # fmt: skip
    assert "schema change on the branch (Neon's compare_schema, production -> after):" in table
    assert "  +    nickname text" in table


def test_429_waits_for_retry_after_and_gives_up_when_it_is_past_the_budget(branched):
    faults(branched, rate_limited={"count": 2, "retry_after": 1.5})
    with api_of(branched) as api:
        started = time.monotonic()
        assert api.branches()
        assert time.monotonic() - started >= 3  # twice 1.5 s, never sooner
    faults(branched, rate_limited={"count": 1, "retry_after": 120})
    with api_of(branched) as api:
        started = time.monotonic()
        with pytest.raises(UnreachableError, match="asked to wait 60 s more"):
            api.branches()  # Retry-After (capped at 60 s) is past the 60 s budget's rest
        assert time.monotonic() - started < 5


@pytest.mark.slow
def test_the_api_calls_of_one_rehearsal_are_counted(branched):
    add_revision(branched, "r2", HEAD, "UPDATE account SET display_name = display_name")
    before = standin_state(branched)["requests"]
    code, report = check(branched["env"], "--skip", "drift")
    calls = rehearsal(report)["details"]["api_calls"]
    served = standin_state(branched)["requests"] - before
    print(f"API calls of one rehearsal: {calls} (the stand-in served {served})")
    assert calls == served and 6 <= calls <= 30 and code == 0


@pytest.mark.slow
def test_the_schema_diff_never_shows_a_user_mappings_password(branched):
    add_revision(branched, "r2", HEAD, "CREATE EXTENSION IF NOT EXISTS postgres_fdw",
                 "CREATE SERVER other FOREIGN DATA WRAPPER postgres_fdw",
                 "CREATE USER MAPPING FOR CURRENT_USER SERVER other "
                 "OPTIONS (user 'u', password 'S3cretMapping')")  # fmt: skip
    result = subprocess.run([sys.executable, SCRIPT, "--json", "--skip", "lint"],
                            env=branched["env"], capture_output=True, text=True,
                            timeout=180)  # fmt: skip
    diff = json.loads(result.stdout)["checks"][-2]["details"]["schema_diff"]
    assert "CREATE USER MAPPING" in diff and "password '***'" in diff, diff
    assert "S3cretMapping" not in diff  # (the revision's own SQL, in the plan, has it)
