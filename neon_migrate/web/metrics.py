"""Pool and health figures in Prometheus' text format (`pip install .[metrics]`).

    register()                       # into prometheus_client's default registry
    app.include_router(metrics_router())   # GET /metrics, if the app has no exporter yet

A collector reads the pools' figures at scrape time: nothing is counted twice and the
request path pays nothing for metrics. Names follow Prometheus' conventions (base units,
`_total` on counters) and use the words of /health/db/pool; the Grafana dashboard
(`scripts/generate_dashboard_config.py`) is generated from METRICS below, so the two
cannot drift apart.
"""

from __future__ import annotations

import threading
import weakref
from dataclasses import dataclass

from neon_migrate.observe.pool_stats import all_stats
from neon_migrate.web.last_check import last


@dataclass(frozen=True)
class Metric:
    name: str  # as exported; a counter's ends in _total
    kind: str  # gauge | counter | histogram
    help: str
    field: str | None = None  # the PoolSnapshot field it exports, for pool figures


METRICS: tuple[Metric, ...] = (
    Metric("db_pool_size", "gauge", "Connections the pool keeps (0 without a pool).", "size"),
    Metric(
        "db_pool_max_overflow", "gauge", "Extra connections allowed under load.", "max_overflow"
    ),
    Metric("db_pool_checked_out_connections", "gauge", "Connections in use.", "checked_out"),
    Metric(
        "db_pool_checked_in_connections", "gauge", "Idle connections in the pool.", "checked_in"
    ),
    Metric(
        "db_pool_overflow_connections",
        "gauge",
        "Connections open beyond the pool size.",
        "overflow",
    ),
    Metric("db_pool_waiting_requests", "gauge", "Callers waiting for a connection.", "waiting"),
    Metric(
        "db_pool_leaked_connections",
        "gauge",
        "Connections checked out longer than DB_POOL_LEAK_SECONDS.",
        "leaked",
    ),
    Metric("db_pool_checkouts_total", "counter", "Connections handed out.", "checkouts"),
    Metric(
        "db_pool_checkout_timeouts_total",
        "counter",
        "Callers that gave up waiting: the pool was exhausted.",
        "checkout_timeouts",
    ),
    Metric("db_pool_connects_total", "counter", "Server connections opened.", "connects"),
    Metric(
        "db_pool_invalidated_total",
        "counter",
        "Connections discarded after an error.",
        "invalidated",
    ),
    Metric(
        "db_pool_recycled_total",
        "counter",
        "Connections replaced for age (DB_POOL_RECYCLE) or a pool-wide reset.",
        "recycled",
    ),
    Metric(
        "db_pool_disconnects_recovered_total",
        "counter",
        "Connections found dead at checkout and replaced, unseen by the caller.",
        "disconnects_recovered",
    ),
    Metric(
        "db_pool_disconnect_errors_total",
        "counter",
        "Disconnects a statement ran into (the caller got an error).",
        "disconnect_errors",
    ),
    Metric(
        "db_pool_leaks_total",
        "counter",
        "Connections ever reported as held past DB_POOL_LEAK_SECONDS.",
        "leaks",
    ),
    Metric(
        "db_pool_checkout_wait_seconds",
        "histogram",
        "Time a caller waited for a connection, queueing and connecting included.",
    ),
    Metric("db_health_up", "gauge", "1 if the last GET /health/db found the database healthy."),
    Metric(
        "db_health_latency_seconds",
        "gauge",
        "Connect plus one query, as measured by the last GET /health/db.",
    ),
)


def sample_names(metric: Metric) -> tuple[str, ...]:
    """The series names a metric appears under in the text format."""
    if metric.kind == "histogram":
        return tuple(f"{metric.name}_{suffix}" for suffix in ("bucket", "count", "sum"))
    return (metric.name,)


class PoolCollector:
    """A prometheus_client collector over every instrumented engine's pool."""

    def collect(self):
        from prometheus_client.core import (
            CounterMetricFamily,
            GaugeMetricFamily,
            HistogramMetricFamily,
        )

        pools = [(stats, stats.snapshot()) for stats in all_stats()]
        check = last()
        for metric in METRICS:
            if metric.field is not None:
                family_class = GaugeMetricFamily if metric.kind == "gauge" else CounterMetricFamily
                family = family_class(metric.name, metric.help, labels=["pool"])
                for _, snapshot in pools:
                    family.add_metric([snapshot.name], getattr(snapshot, metric.field))
            elif metric.kind == "histogram":
                family = HistogramMetricFamily(metric.name, metric.help, labels=["pool"])
                for stats, snapshot in pools:
                    buckets, total = stats.histogram()
                    family.add_metric(
                        [snapshot.name],
                        [(_bound(bound), count) for bound, count in buckets],
                        sum_value=total,
                    )
            elif metric.name == "db_health_up":
                family = GaugeMetricFamily(metric.name, metric.help)
                if check is not None:
                    family.add_metric([], 1.0 if check.healthy else 0.0)
            else:
                family = GaugeMetricFamily(metric.name, metric.help)
                if check is not None and check.latency_seconds is not None:
                    family.add_metric([], check.latency_seconds)
            yield family


def _bound(bound: float) -> str:
    return "+Inf" if bound == float("inf") else repr(float(bound))


_LOCK = threading.Lock()
_REGISTERED: weakref.WeakSet = weakref.WeakSet()  # registries holding our collector


def register(registry=None):
    """Add the collector to `registry` (default: prometheus_client's), once."""
    from prometheus_client import REGISTRY

    registry = registry or REGISTRY
    with _LOCK:
        if registry not in _REGISTERED:
            registry.register(PoolCollector())
            _REGISTERED.add(registry)
    return registry


def metrics_router(path: str = "/metrics", registry=None):
    """GET /metrics serving `registry` with the collector registered in it."""
    from fastapi import APIRouter
    from fastapi.responses import Response
    from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

    registry = register(registry)
    router = APIRouter(tags=["metrics"])

    # response_model=None: the annotation names a class imported in this function, which
    # FastAPI cannot resolve later, and /openapi.json (so /docs) would fail on it.
    @router.get(path, response_model=None)
    def metrics() -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    return router
