"""pool-size: from the workload to DB_POOL_SIZE, checked against the compute's limits.

The arithmetic (neon_migrate.observe.sizing) is shown, not just its answer: a number a
person can follow is one they can adjust when their workload differs from the flags.
The database is read only when a URL is configured, and only on the direct endpoint
(one connection, one query); otherwise the ceiling is Neon's smallest compute's, or
--max-connections, and the output says which.
"""

from __future__ import annotations

import argparse
import math

from neon_migrate.commands import Command, json_argument
from neon_migrate.commands.output import note, out, out_json
from neon_migrate.errors import ConfigError
from neon_migrate.observe import sizing


def _arguments(parser: argparse.ArgumentParser) -> None:
    json_argument(parser)
    add = parser.add_argument
    add("--replicas", type=int, metavar="N", help="servers (containers, VMs); default 1")
    add("--workers", type=int, metavar="N", help="processes per replica; default 1")
    add(
        "--threads",
        type=int,
        metavar="N",
        help="requests one worker serves at once (threads; for async, its concurrency)",
    )
    add(
        "--function-concurrency",
        type=int,
        metavar="N",
        help="serverless: function instances at once, one request each",
    )
    add("--rps", type=float, metavar="R", help="the whole deployment's requests per second")
    add(
        "--request-ms",
        type=float,
        metavar="MS",
        help="average time a request holds a connection (its database time)",
    )
    add(
        "--request-timeout",
        type=float,
        default=30,
        metavar="S",
        help="the app's request timeout, in seconds (default 30)",
    )
    add("--max-connections", type=int, metavar="N",
        help="the compute's max_connections, instead of reading it from the database")  # fmt: skip


def cmd_pool_size(args: argparse.Namespace) -> int:
    work = workload(args)
    ceiling, read = _ceiling(args.max_connections)
    rec = sizing.recommend(work, ceiling)
    if args.json:
        out_json({"command": "pool-size", "ok": True, "fits": rec.verdict.startswith("fits"),
                  "read_from_database": read, "workload": vars(work), **rec.as_dict()})  # fmt: skip
        return 0
    for line in text(work, rec):
        out(line)
    return 0


def workload(args: argparse.Namespace) -> sizing.Workload:
    """The flags as a workload; a flag a user got wrong is one ConfigError line."""
    if args.threads is not None and args.function_concurrency is not None:
        raise ConfigError(
            "--threads and --function-concurrency both given",
            "--threads for a long-running server, --function-concurrency for serverless",
        )
    if args.threads is None and args.function_concurrency is None:
        raise ConfigError(
            "no concurrency given",
            "add --threads N (requests at once per worker) or --function-concurrency N",
        )
    if args.function_concurrency is not None and (args.replicas or args.workers):
        raise ConfigError(
            "--replicas/--workers with --function-concurrency",
            "for serverless give only --function-concurrency (instances at once)",
        )
    for flag in ("replicas", "workers", "threads", "function_concurrency", "max_connections"):
        value = getattr(args, flag)
        if value is not None and value < 1:
            raise ConfigError(f"--{flag.replace('_', '-')} {value}: must be 1 or more")
    for flag in ("rps", "request_ms", "request_timeout"):
        value = getattr(args, flag)
        if value is not None and not (value > 0 and math.isfinite(value) and value < 1e9):
            raise ConfigError(f"--{flag.replace('_', '-')} {value:g}: must be above 0, a number")
    if (args.rps is None) != (args.request_ms is None):
        raise ConfigError(
            "--rps and --request-ms go together",
            "give both (requests per second, and the time each holds a connection), or neither",
        )
    return sizing.Workload(
        replicas=args.replicas or 1,
        workers=args.workers or 1,
        threads=args.threads,
        function_concurrency=args.function_concurrency,
        rps=args.rps,
        request_ms=args.request_ms,
        request_timeout=args.request_timeout,
    )


def _ceiling(given: int | None) -> tuple[sizing.Ceiling, bool]:
    """Read from the configured database, else given, else Neon's smallest compute."""
    from neon_migrate.settings import get_settings

    settings = get_settings()
    if given is None and (settings.database_url or settings.database_url_direct or _twin(settings)):
        from neon_migrate.connection.health import check_connection

        note("pool-size: reading max_connections on the direct endpoint")
        health = check_connection("direct")
        return sizing.server_ceiling(health.max_connections, health.reserved_connections), True
    if given is not None:
        return sizing.neon_ceiling(given, how="given"), False
    return sizing.neon_ceiling(sizing.NEON_SMALLEST_MAX_CONNECTIONS, how=sizing.ASSUMED), False


def _twin(settings) -> bool:
    """A local twin already running, in local development: read it (never start one)."""
    from neon_migrate.connection.endpoints import local_development

    if local_development(settings) is not None:
        return False
    from neon_migrate.twin.lifecycle import running_twin

    return running_twin(settings.local_db_dir, settings.local_pg_bin_dir) is not None


def _count(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def text(work: sizing.Workload, rec: sizing.Recommendation) -> list[str]:
    if work.serverless:
        shape = f"{work.function_concurrency} function instances at once, one request each"
    else:
        shape = " x ".join(
            _count(n, word)
            for n, word in (
                (work.replicas, "replica"),
                (work.workers, "worker"),
                (work.threads, "thread"),
            )
        )
    if work.rps is not None:
        shape += f", {work.rps:g} rps, {work.request_ms:g} ms per request"
    lines = [f"pool-size: {shape}"]
    lines += [f"  {step}" for step in rec.arithmetic]
    lines.append(f"ceiling: {rec.ceiling.words()}")
    if rec.ceiling.clients is not None:
        pooler = "Neon's pooler's" if rec.ceiling.kind == "neon-pooler" else "PgBouncer's"
        lines.append(
            f"  clients: {rec.fleet_max} of {pooler} {rec.ceiling.clients:,} "
            "(max_client_conn); migrations use the direct endpoint, outside this pool"
        )
    lines.append(f"fleet: {rec.verdict}")
    serverless = (
        "true: one request per process, so Neon's pooler does the pooling"
        if rec.serverless
        else "false: a pool per process saves a TLS handshake per request"
    )
    lines.append(f"serverless: DB_SERVERLESS={serverless}")
    lines.append("")
    lines += [f"{key}={value:g}" if isinstance(value, float) else f"{key}={value}"
              for key, value in rec.as_dict()["env"].items()]  # fmt: skip
    return lines


COMMAND = Command(
    "pool-size",
    "recommend DB_POOL_SIZE and friends from the workload",
    "Recommend DB_POOL_SIZE, DB_MAX_OVERFLOW, DB_POOL_TIMEOUT and DB_SERVERLESS "
    "from the workload, with the arithmetic shown, and check the whole "
    "deployment's pools against the compute's ceiling (read from the database "
    "when a URL is configured, else --max-connections or a 0.25 CU compute's).",
    cmd_pool_size,
    _arguments,
)
