"""How big the app's pools should be, and whether a fleet of them fits the database.

The rule the pooling guidance starts from is Little's law: connections busy at once =
requests per second x the time each holds a connection. Everything here is that law plus
the limits a Neon compute puts around it. Pure arithmetic: the caller reads the server.

Why these rules:
- Pool size per worker = the 99th percentile of the number of its requests holding a
  connection at once, at most the worker's threads. With requests arriving at random,
  that number is Poisson-distributed with mean rps x time held (the M/G/infinity queue:
  true whatever the distribution of request times), so 99% of the time no request waits
  for the pool or opens an extra connection. Twice the mean is not enough: at a mean of
  2 busy, 5% of moments have 5 or more. A worker can never use more connections than it
  has threads, so more is waste; fewer keeps idle server processes few.
- Overflow = up to the threads, within the fleet's share of the ceiling: a burst seldom
  waits for the worker's own pool (every thread can get a connection while the server
  has room), yet those connections close again when it passes, and the fleet's maximum
  never passes the ceiling when it need not. Without --rps the load is unknown: pool
  size = threads. Both stay within what the settings accept (100 and 200).
- Pool timeout: a third of the request timeout (default 30 s, so 10 s), never above
  30 s: a request that cannot get a connection from its own pool should fail while its
  caller still waits. It does not bound a wait inside Neon's pooler (a transaction
  queued there waits up to its query_wait_timeout, 120 s): only the fleet fitting the
  ceiling does, which is why the verdict is said.
- DB_SERVERLESS=true when the process serves one request at a time (a function with
  per-instance concurrency 1): a pool there only holds idle connections on the pooler,
  while Neon's PgBouncer already shares server connections between instances.
- The ceiling a fleet is measured against is the server-side one: on Neon the pooler's
  pool per user and database, 0.9 x max_connections (beyond it transactions queue inside
  the pooler, for up to 120 s); on plain PostgreSQL max_connections minus the
  superuser's reserved slots minus a margin, since migrations, the pre-deploy check and
  an admin's psql use the direct endpoint and count against the same max_connections.
"""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

NEON_POOL_FRACTION = 0.9  # Neon's default_pool_size per user and database
NEON_MAX_CLIENT_CONN = 10_000
NEON_QUERY_WAIT_TIMEOUT = 120  # seconds a transaction may queue inside Neon's pooler
NEON_SMALLEST_MAX_CONNECTIONS = 104  # a 0.25 CU compute
NEON_RESERVED = 7  # slots Neon keeps for its superuser
DIRECT_MARGIN = 3  # a migration run, the pre-deploy check, one admin session
COVERED = 0.99  # share of moments the pool alone serves
MAX_POOL_SIZE, MAX_OVERFLOW = 100, 200  # what DB_POOL_SIZE and DB_MAX_OVERFLOW accept
DEFAULT_REQUEST_TIMEOUT = 30.0


@dataclass(frozen=True)
class Workload:
    replicas: int = 1
    workers: int = 1
    threads: int | None = None  # concurrent requests per worker
    function_concurrency: int | None = None  # serverless: instances at once
    rps: float | None = None  # the whole deployment's requests per second
    request_ms: float | None = None  # average time a request holds a connection
    request_timeout: float = DEFAULT_REQUEST_TIMEOUT

    @property
    def serverless(self) -> bool:
        return self.function_concurrency is not None

    @property
    def processes(self) -> int:
        return self.function_concurrency if self.serverless else self.replicas * self.workers


@dataclass(frozen=True)
class Ceiling:
    """The server connections a deployment's pools share, and where the number came from."""

    connections: int
    kind: str  # neon-pooler | pgbouncer | postgres
    source: str  # how it was found, in words
    max_connections: int
    reserved: int
    clients: int | None = None  # the pooler's max_client_conn, when known

    def words(self) -> str:
        return f"{self.connections} server connections ({self.source})"


ASSUMED = "assumed: a 0.25 CU compute; give --max-connections"


def neon_ceiling(max_connections: int, reserved: int = NEON_RESERVED, how: str = "read") -> Ceiling:
    pool = math.floor(NEON_POOL_FRACTION * max_connections)
    source = (
        f"Neon's pooler: 0.9 x max_connections {max_connections} ({how}), per user and database"
    )
    return Ceiling(pool, "neon-pooler", source, max_connections, reserved, NEON_MAX_CLIENT_CONN)


def postgres_ceiling(
    max_connections: int, reserved: int, pooler_pool: int | None = None, read: bool = True
) -> Ceiling:
    """Plain PostgreSQL (or the local twin): what is left after reserved slots and the
    direct endpoint's own users; a PgBouncer in front caps it at its pool."""
    left = max(0, max_connections - reserved - DIRECT_MARGIN)
    how = "read" if read else "given"
    source = (
        f"max_connections {max_connections} ({how}) - {reserved} reserved - "
        f"{DIRECT_MARGIN} for migrations and admin = {left}"
    )
    if pooler_pool is not None and pooler_pool < left:
        return Ceiling(
            pooler_pool,
            "pgbouncer",
            f"PgBouncer default_pool_size {pooler_pool}; {source}",
            max_connections,
            reserved,
        )
    return Ceiling(left, "postgres", source, max_connections, reserved)


def pgbouncer_limits(ini: Path) -> dict[str, int]:
    """default_pool_size and max_client_conn from a PgBouncer config, those present."""
    try:
        text = ini.read_text()
    except OSError:
        return {}
    found = {}
    for key in ("default_pool_size", "max_client_conn"):
        values = re.findall(rf"^\s*{key}\s*=\s*(\d+)", text, re.MULTILINE)
        if values:  # as PgBouncer reads it: a later line wins
            found[key] = int(values[-1])
    return found


@dataclass
class Recommendation:
    pool_size: int
    max_overflow: int
    pool_timeout: float
    serverless: bool
    processes: int
    per_process_max: int  # connections one process may hold (pool + overflow)
    fleet_max: int  # all processes at their limit
    fleet_steady: float  # connections busy on average (rps x request time)
    arithmetic: list[str] = field(default_factory=list)
    ceiling: Ceiling | None = None
    verdict: str = ""

    def as_dict(self) -> dict:
        document = asdict(self)
        document["env"] = {
            "DB_POOL_SIZE": self.pool_size,
            "DB_MAX_OVERFLOW": self.max_overflow,
            "DB_POOL_TIMEOUT": self.pool_timeout,
            "DB_SERVERLESS": "true" if self.serverless else "false",
            "DB_POOL_PROCESSES": self.processes,
        }
        return document


def poisson_quantile(mean: float, share: float) -> int:
    """The smallest k with P(N <= k) >= share, for N ~ Poisson(mean)."""
    if mean > 500:  # exp(-mean) underflows; the normal approximation is close by then
        return math.ceil(mean + 2.33 * math.sqrt(mean))
    term = total = math.exp(-mean)
    k = 0
    while total < share:
        k += 1
        term *= mean / k
        total += term
    return k


def _g(value: float) -> str:
    return f"{value:.3g}" if value < 10 else f"{value:,.0f}"


def recommend(work: Workload, ceiling: Ceiling) -> Recommendation:
    steps: list[str] = []
    timeout = float(min(30, max(0.1, round(work.request_timeout / 3, 1))))
    steady = 0.0
    if work.rps is not None and work.request_ms is not None:
        steady = work.rps * work.request_ms / 1000
    if work.serverless:
        n = work.function_concurrency or 1
        steps.append(f"processes = function concurrency = {n} (one request each at a time)")
        if steady:
            steps.append(
                f"connections busy on average = rps x request_s = {_g(work.rps)} x "
                f"{work.request_ms / 1000:g} = {_g(steady)}"
            )
        steps.append(f"connections at peak = one per instance = {n}")
        rec = Recommendation(1, 0, timeout, True, n, 1, n, steady, steps, ceiling)
    else:
        threads = work.threads or 1
        processes = work.replicas * work.workers
        steps.append(
            f"processes = replicas x workers = {work.replicas} x {work.workers} = {processes}"
        )
        if steady:
            per_worker = work.rps / processes * work.request_ms / 1000
            steps.append(
                f"concurrent requests per worker = rps / (replicas x workers) x request_s = "
                f"{_g(work.rps)} / {processes} x {work.request_ms / 1000:g} = {per_worker:.3f}"
            )
            quantile = poisson_quantile(per_worker, COVERED)
            size = min(threads, max(1, quantile), MAX_POOL_SIZE)
            steps.append(
                f"DB_POOL_SIZE = min(threads, 99th percentile of Poisson({per_worker:.3f}), "
                f"{MAX_POOL_SIZE}) = min({threads}, {quantile}, {MAX_POOL_SIZE}) = {size}"
            )
        else:
            size = min(threads, MAX_POOL_SIZE)
            steps.append(
                f"DB_POOL_SIZE = min(threads, {MAX_POOL_SIZE}) = {size} (no --rps and "
                "--request-ms: the load is unknown)"
            )
        share = ceiling.connections // processes
        per_process = min(threads, max(size, share), size + MAX_OVERFLOW)
        overflow = per_process - size
        steps.append(
            f"DB_MAX_OVERFLOW = min(threads, max(DB_POOL_SIZE, ceiling {ceiling.connections} // "
            f"processes {processes} = {share})) - DB_POOL_SIZE = {per_process} - {size} = "
            f"{overflow}"
        )
        fleet = processes * per_process
        steps.append(
            f"fleet at most = processes x (pool + overflow) = {processes} x {per_process} = {fleet}"
        )
        if steady:
            steps.append(
                f"fleet busy on average = rps x request_s = {_g(work.rps)} x "
                f"{work.request_ms / 1000:g} = {_g(steady)}"
            )
        rec = Recommendation(
            size, overflow, timeout, False, processes, per_process, fleet, steady, steps, ceiling
        )
        if steady > processes * threads:  # Little's law: the threads cannot carry the load
            rec.verdict = (
                f"saturated: the load keeps {_g(steady)} requests busy on average, and the fleet "
                f"has {processes * threads} threads; add workers or threads (requests queue "
                "without bound)"
            )
    steps.append(
        f"DB_POOL_TIMEOUT = min(30, request timeout {work.request_timeout:g} s / 3) = "
        f"{timeout:g} s (under the pooler's query_wait_timeout "
        f"{NEON_QUERY_WAIT_TIMEOUT} s)"
    )
    pooled = ceiling.kind in POOLED_DOORS
    if pooled and steady:
        transactions = poisson_quantile(steady, COVERED)
        steps.insert(
            -1,
            f"server side (a pooler in transaction mode holds a server connection only for a "
            f"transaction) = 99th percentile of Poisson({_g(steady)}) = {transactions} "
            "concurrent transactions",
        )
        verdict = pooled_fits(rec.fleet_max, transactions, steady, ceiling)
    else:
        if pooled:
            steps.insert(
                -1,
                "server side: without --rps and --request-ms every client connection is "
                "counted as a transaction at once (an upper bound)",
            )
        verdict = fits(rec.fleet_max, rec.fleet_steady, ceiling)
    rec.verdict = rec.verdict or verdict
    return rec


POOLED_DOORS = ("neon-pooler", "pgbouncer")  # transaction mode: judged by transactions


def pooled_fits(clients: int, transactions: int, steady: float, ceiling: Ceiling) -> str:
    """A pooled door: its server side is bounded by concurrent transactions, its client
    side by the pooler's max_client_conn, each said."""
    limit = ceiling.connections
    client_part = (
        f"{clients} client connections <= max_client_conn {ceiling.clients:,}"
        if ceiling.clients is not None and clients <= ceiling.clients
        else None
    )
    if ceiling.clients is not None and clients > ceiling.clients:
        return (
            f"over: {clients} client connections > the pooler's max_client_conn "
            f"{ceiling.clients:,}; the pooler refuses the rest: fewer processes or a smaller pool"
        )
    server_part = f"{transactions} concurrent transactions (99th percentile) <= {limit}"
    if transactions <= limit:
        return "fits: " + "; ".join(p for p in (server_part, client_part) if p)
    if steady > limit:
        tail = "even the average load needs more: a larger compute, or fewer/faster queries"
    else:
        tail = (
            "at peak, transactions beyond it queue inside the pooler "
            f"(up to {NEON_QUERY_WAIT_TIMEOUT} s on Neon)"
        )
    return f"over: {transactions} concurrent transactions (99th percentile) > {limit}; {tail}"


def fits(fleet_max: int, steady: float, ceiling: Ceiling) -> str:
    """One sentence: the fleet's connections against the ceiling."""
    limit = ceiling.connections
    if fleet_max <= limit:
        return f"fits: {fleet_max} at most <= {limit}"
    if steady and steady > limit:
        tail = "even the average load needs more: a larger compute, or fewer/faster queries"
    elif ceiling.kind == "neon-pooler":
        tail = (
            "at peak, transactions beyond it queue inside Neon's pooler "
            f"(up to {NEON_QUERY_WAIT_TIMEOUT} s)"
        )
    else:
        tail = "at peak, connections beyond it are refused (too many clients)"
    return f"over: {fleet_max} at most > {limit}; {tail}"


def oversubscription(
    pool_size: int, max_overflow: int, processes: int, serverless: bool, ceiling: Ceiling
) -> str | None:
    """The warning verify and the pre-deploy check give, or None when the pools fit."""
    per = 1 if serverless else pool_size + max_overflow
    fleet = per * processes
    if fleet <= ceiling.connections:
        return None
    how = (
        "1 (DB_SERVERLESS)"
        if serverless
        else f"(DB_POOL_SIZE {pool_size} + DB_MAX_OVERFLOW {max_overflow})"
    )
    what = {
        "neon-pooler": f"transactions beyond it queue inside Neon's pooler (up to "
        f"{NEON_QUERY_WAIT_TIMEOUT} s)",
        "pgbouncer": "transactions beyond it wait inside PgBouncer",
    }.get(ceiling.kind, "connections beyond it are refused, and migrations may get none")
    fix = (
        "lower the function concurrency (DB_POOL_PROCESSES) or size the compute up"
        if serverless
        else "lower the pool or size the compute up (`neon-migrate pool-size`)"
    )
    return (
        f"pools over-subscribed: {how} x DB_POOL_PROCESSES {processes} = {fleet} > "
        f"{ceiling.words()}; at peak {what}; {fix}"
    )


def server_ceiling(max_connections: int, reserved: int) -> Ceiling:
    """The ceiling for the configured database: Neon's pooler on a Neon host, the local
    twin's PgBouncer pool on the twin, plain PostgreSQL's limit otherwise."""
    from neon_migrate.connection.endpoints import get_endpoints

    endpoints = get_endpoints()
    if endpoints.pair.neon:
        return neon_ceiling(max_connections, reserved)
    if endpoints.local is None:
        return postgres_ceiling(max_connections, reserved)
    limits = endpoints.local.pool_limits()
    ceiling = postgres_ceiling(max_connections, reserved, limits.get("default_pool_size"))
    return replace(ceiling, clients=limits.get("max_client_conn"))


def fleet_warning(max_connections: int, reserved: int) -> tuple[str | None, dict]:
    """What verify and the pre-deploy check say about the configured pools: the warning
    (None when they fit) and the figures behind it."""
    from neon_migrate.settings import get_settings

    settings = get_settings()
    ceiling = server_ceiling(max_connections, reserved)
    per = 1 if settings.db_serverless else settings.db_pool_size + settings.db_max_overflow
    figures = {
        "pool_per_process": per,
        "pool_processes": settings.db_pool_processes,
        "pool_fleet_max": per * settings.db_pool_processes,
        "ceiling": ceiling.connections,
        "ceiling_kind": ceiling.kind,
        "max_connections": max_connections,
        "reserved_connections": reserved,
    }
    warning = oversubscription(
        settings.db_pool_size,
        settings.db_max_overflow,
        settings.db_pool_processes,
        settings.db_serverless,
        ceiling,
    )
    return warning, figures


def fleet_text(figures: dict) -> str:
    return (f"{figures['pool_per_process']} per process x {figures['pool_processes']} = "
            f"{figures['pool_fleet_max']} of {figures['ceiling']} server connections")  # fmt: skip
