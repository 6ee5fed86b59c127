"""Pool sizing: the arithmetic, the command, and the warning when a fleet's pools add up to
more than the database serves (verify and the pre-deploy check)."""

from __future__ import annotations

import json
import subprocess
from dataclasses import replace

import psycopg
import pytest
from helpers import CLI, verify_line

from neon_migrate.observe.sizing import (
    ASSUMED,
    Workload,
    neon_ceiling,
    oversubscription,
    pgbouncer_limits,
    poisson_quantile,
    postgres_ceiling,
    recommend,
)


def split(args: list[str], env: dict) -> subprocess.CompletedProcess:
    return subprocess.run([*CLI, *args], env=env, capture_output=True, text=True, timeout=120)


def test_long_running_server_example():
    """README's example: 3 replicas x 4 workers x 8 threads, 200 rps, 40 ms of DB time."""
    rec = recommend(Workload(3, 4, 8, rps=200, request_ms=40), neon_ceiling(209, how="given"))
    assert (rec.pool_size, rec.max_overflow, rec.pool_timeout, rec.serverless) == (3, 5, 10, False)
    assert (rec.processes, rec.per_process_max, rec.fleet_max, rec.fleet_steady) == (12, 8, 96, 8)
    assert rec.ceiling.connections == 188  # floor(0.9 x 209)
    assert (
        "concurrent requests per worker = rps / (replicas x workers) x request_s = "
        "200 / 12 x 0.04 = 0.667" in rec.arithmetic
    )
    assert (
        "DB_POOL_SIZE = min(threads, 99th percentile of Poisson(0.667), 100) = min(8, 3, 100) = 3"
        in rec.arithmetic
    )
    assert rec.verdict == (
        "fits: 15 concurrent transactions (99th percentile) <= 188; "
        "96 client connections <= max_client_conn 10,000"
    )


def test_overflow_stays_within_the_ceiling_when_it_can():
    """On a 0.25 CU compute (93 in the pooler) the same fleet gets 3+4, 84 at most: it fits."""
    rec = recommend(Workload(3, 4, 8, rps=200, request_ms=40), neon_ceiling(104, how="given"))
    assert (rec.pool_size, rec.max_overflow, rec.fleet_max) == (3, 4, 84)
    assert rec.verdict.startswith("fits: 15 concurrent transactions (99th percentile) <= 93")


def test_recommendations_stay_within_what_the_settings_accept():
    rec = recommend(Workload(1, 1, 500, rps=100, request_ms=20), neon_ceiling(4000))
    assert rec.pool_size <= 100 and rec.max_overflow <= 200
    big = recommend(Workload(1, 1, 300), neon_ceiling(4000))
    assert (big.pool_size, big.max_overflow) == (100, 200)


def test_a_load_the_threads_cannot_carry_is_saturated():
    rec = recommend(Workload(3, 4, 8, rps=1000, request_ms=200), neon_ceiling(419))
    assert rec.verdict.startswith("saturated: the load keeps 200 requests busy on average")


def test_serverless_over_subscription_names_what_to_lower():
    warning = oversubscription(5, 10, 200, True, neon_ceiling(104))
    assert warning.endswith("lower the function concurrency (DB_POOL_PROCESSES) or size the "
                            "compute up")  # fmt: skip


def test_serverless_example():
    """README's example: 200 function instances, 500 rps, 20 ms: 18 transactions fit 93."""
    rec = recommend(
        Workload(function_concurrency=200, rps=500, request_ms=20),
        neon_ceiling(104, how=ASSUMED),
    )
    assert (rec.pool_size, rec.max_overflow, rec.serverless, rec.fleet_max) == (1, 0, True, 200)
    assert rec.fleet_steady == 10
    assert rec.ceiling.connections == 93
    assert rec.verdict.startswith("fits: 18 concurrent transactions (99th percentile) <= 93")


def test_the_pooled_door_is_judged_by_transactions_the_direct_door_by_connections():
    """Before: 500 serverless instances at 300 rps x 25 ms (7.5 transactions busy on
    average) on a 0.25 CU compute were judged `over: 500 at most > 93`."""
    work = Workload(function_concurrency=500, rps=300, request_ms=25)
    rec = recommend(work, neon_ceiling(104, how=ASSUMED))
    assert rec.verdict == (
        "fits: 15 concurrent transactions (99th percentile) <= 93; "
        "500 client connections <= max_client_conn 10,000"
    )
    assert any("99th percentile of Poisson(7.5) = 15 concurrent transactions" in step
               for step in rec.arithmetic)  # fmt: skip
    direct = recommend(work, postgres_ceiling(100, 3))  # no pooler: every connection counts
    assert direct.verdict.startswith("over: 500 at most > 94; at peak, connections beyond")
    heavy = recommend(Workload(function_concurrency=500, rps=5000, request_ms=25),
                      neon_ceiling(104, how=ASSUMED))  # fmt: skip
    assert heavy.verdict.startswith("over: 152 concurrent transactions (99th percentile) > 93")
    small_pooler = replace(neon_ceiling(104), clients=400)
    assert recommend(work, small_pooler).verdict.startswith(
        "over: 500 client connections > the pooler's max_client_conn 400"
    )


def test_poisson_quantile():
    """P(N <= 3) = 0.9942 for a mean of 0.667, P(N <= 5) = 0.983 and P(N <= 6) = 0.9955 for 2."""
    assert [poisson_quantile(m, 0.99) for m in (0.1, 0.667, 2, 8)] == [1, 3, 6, 15]
    assert poisson_quantile(10_000, 0.99) == 10_233  # large means: no underflow, no hang


def test_unknown_load_gives_every_thread_a_pooled_connection():
    rec = recommend(Workload(2, 2, 6), postgres_ceiling(100, 3))
    assert (rec.pool_size, rec.max_overflow, rec.fleet_max) == (6, 0, 24)
    assert rec.ceiling.connections == 94  # 100 - 3 reserved - 3 for migrations and admin


def test_a_pgbouncer_pool_smaller_than_the_server_is_the_ceiling():
    ceiling = postgres_ceiling(20, 3, pooler_pool=8)
    assert (ceiling.connections, ceiling.kind) == (8, "pgbouncer")
    warning = oversubscription(4, 2, 2, False, ceiling)
    assert warning.startswith(
        "pools over-subscribed: (DB_POOL_SIZE 4 + DB_MAX_OVERFLOW 2) x DB_POOL_PROCESSES 2 = "
        "12 > 8 server connections"
    )
    assert oversubscription(2, 2, 2, False, ceiling) is None


def test_pgbouncer_limits_are_read_as_pgbouncer_reads_them(tmp_path):
    ini = tmp_path / "pgbouncer.ini"
    ini.write_text("[pgbouncer]\nmax_client_conn = 1000\ndefault_pool_size = 20\n"
                   "; a later line wins\ndefault_pool_size = 12\n")  # fmt: skip
    assert pgbouncer_limits(ini) == {"default_pool_size": 12, "max_client_conn": 1000}
    assert pgbouncer_limits(tmp_path / "missing.ini") == {}


def test_command_text_and_json_without_a_database(harness_env):
    args = ["pool-size", "--replicas", "3", "--workers", "4", "--threads", "8", "--rps", "200",
            "--request-ms", "40", "--max-connections", "209"]  # fmt: skip
    result = split(args, harness_env)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "pool-size: 3 replicas x 4 workers x 8 threads, 200 rps, 40 ms per request"
    assert lines[-5:] == ["DB_POOL_SIZE=3", "DB_MAX_OVERFLOW=5", "DB_POOL_TIMEOUT=10",
                          "DB_SERVERLESS=false", "DB_POOL_PROCESSES=12"]  # fmt: skip
    assert "ceiling: 188 server connections (Neon's pooler: 0.9 x max_connections 209 (given)" in (
        result.stdout
    )
    assert "fleet: fits: 15 concurrent transactions (99th percentile) <= 188; 96 client" in (
        result.stdout
    )
    assert "reading max_connections" not in result.stderr  # given: nothing was read
    document = json.loads(split([*args, "--json"], harness_env).stdout)
    assert document["env"] == {"DB_POOL_SIZE": 3, "DB_MAX_OVERFLOW": 5, "DB_POOL_TIMEOUT": 10.0,
                               "DB_SERVERLESS": "false", "DB_POOL_PROCESSES": 12}  # fmt: skip
    assert document["read_from_database"] is False
    assert document["ceiling"]["connections"] == 188


def test_command_reads_max_connections_from_the_database(harness_env, db_url):
    with psycopg.connect(db_url) as conn:
        max_conn = int(conn.execute("SHOW max_connections").fetchone()[0])
        reserved = conn.execute(
            "SELECT current_setting('superuser_reserved_connections')::int + coalesce("
            "nullif(current_setting('reserved_connections', true), '')::int, 0)"
        ).fetchone()[0]
    result = split(["pool-size", "--threads", "4", "--json"], harness_env)
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    assert document["read_from_database"] is True
    ceiling = document["ceiling"]
    assert (ceiling["max_connections"], ceiling["reserved"]) == (max_conn, reserved)
    assert ceiling["connections"] == max_conn - reserved - 3
    assert ceiling["kind"] == "postgres"
    text = split(["pool-size", "--threads", "4"], harness_env).stdout
    assert f"max_connections {max_conn} (read) - {reserved} reserved" in text


@pytest.mark.parametrize(
    "flags",
    [
        ["--workers", "0", "--threads", "4"],
        ["--threads", "4", "--function-concurrency", "10"],
        ["--workers", "2"],
        ["--threads", "4", "--rps", "100"],
        ["--function-concurrency", "10", "--replicas", "2"],
        ["--threads", "4", "--request-ms", "-5", "--rps", "1"],
    ],
    ids=" ".join,
)
def test_user_errors_are_one_line_and_exit_2(harness_env, flags):
    result = split(["pool-size", *flags], harness_env)
    assert result.returncode == 2
    assert result.stdout == ""
    assert len(result.stderr.splitlines()) == 1 and result.stderr.startswith("error: ")


def test_verify_warns_about_an_oversubscribed_fleet_and_still_exits_0(harness_env):
    env = dict(harness_env, DB_POOL_PROCESSES="50")
    migrated = split(["migrate"], env)
    assert migrated.returncode == 0, migrated.stdout + migrated.stderr
    line = verify_line(migrated.stdout, "pools")
    assert "  warn  pools over-subscribed: (DB_POOL_SIZE 5 + DB_MAX_OVERFLOW 10) x " in line
    assert "DB_POOL_PROCESSES 50 = 750 > " in line
    result = split(["verify", "--json"], env)
    assert result.returncode == 0
    pools = next(i for i in json.loads(result.stdout)["verify"] if i["name"] == "pools")
    assert pools["ok"] is True and pools["warning"] is True
    assert "= 750 > " in pools["detail"]


def test_check_warns_with_the_numbers_in_its_json(harness_env):
    env = dict(harness_env, DB_POOL_PROCESSES="50")
    result = split(["check", "--json", "--only", "pooled"], env)
    assert result.returncode == 0, result.stdout + result.stderr
    pooled = next(c for c in json.loads(result.stdout)["checks"] if c["id"] == "pooled")
    assert pooled["status"] == "warn"
    assert "pools over-subscribed" in pooled["message"]
    pools = pooled["details"]["pools"]
    assert (pools["pool_per_process"], pools["pool_processes"], pools["pool_fleet_max"]) == (
        15,
        50,
        750,
    )
    assert pools["ceiling"] < 750


def test_a_sane_configuration_gets_no_warning(harness_env):
    assert split(["migrate"], harness_env).returncode == 0
    result = split(["verify"], harness_env)
    assert result.returncode == 0
    line = verify_line(result.stdout, "pools")
    assert "  ok    fit: 15 per process x 1 = 15 of " in line
    check = json.loads(split(["check", "--json", "--only", "pooled"], harness_env).stdout)
    pooled = next(c for c in check["checks"] if c["id"] == "pooled")
    assert pooled["status"] == "pass" and pooled["details"]["pools"]["pool_fleet_max"] == 15
