"""A Grafana dashboard over exactly the metrics neon_migrate/web/metrics.py exports.

Each panel's queries are built from METRICS by name (`m("...")` refuses a name that is
not exported), so a renamed metric breaks the generator, not a dashboard in production.
"""

from __future__ import annotations

import json

from neon_migrate.web.metrics import METRICS

DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
POOL = '{pool=~"$pool"}'
RATE = "[$__rate_interval]"


def m(name: str) -> str:
    if not any(metric.name == name for metric in METRICS):
        raise KeyError(f"{name} is not an exported metric")
    return name


def _panel(number: int, title: str, description: str, unit: str, targets: list[tuple[str, str]]):
    return {
        "id": number,
        "type": "timeseries",
        "title": title,
        "description": description,
        "datasource": DATASOURCE,
        "gridPos": {"h": 8, "w": 12, "x": 12 * ((number - 1) % 2), "y": 8 * ((number - 1) // 2)},
        "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
        "options": {"legend": {"displayMode": "list", "placement": "bottom"}},
        "targets": [
            {
                "refId": chr(ord("A") + i),
                "datasource": DATASOURCE,
                "expr": expr,
                "legendFormat": leg,
            }
            for i, (expr, leg) in enumerate(targets)
        ],
    }


def _quantile(q: str) -> str:
    bucket = m("db_pool_checkout_wait_seconds") + "_bucket"
    return f"histogram_quantile({q}, sum by (pool, le) (rate({bucket}{POOL}{RATE})))"


def panels() -> list[dict]:
    specs = [
        ("Connections", "In use, idle and overflow, against the pool's size.", "short", [
            (f"{m('db_pool_checked_out_connections')}{POOL}", "{{pool}} checked out"),
            (f"{m('db_pool_checked_in_connections')}{POOL}", "{{pool}} checked in"),
            (f"{m('db_pool_overflow_connections')}{POOL}", "{{pool}} overflow"),
            (f"{m('db_pool_size')}{POOL} + {m('db_pool_max_overflow')}{POOL}", "{{pool}} limit"),
        ]),
        ("Checkout wait", "How long requests wait for a connection (p50, p99).", "s", [
            (_quantile("0.5"), "{{pool}} p50"),
            (_quantile("0.99"), "{{pool}} p99"),
        ]),
        ("Checkouts and exhaustion", "Checkouts per second; timeouts mean the pool ran out.",
         "ops", [
            (f"rate({m('db_pool_checkouts_total')}{POOL}{RATE})", "{{pool}} checkouts/s"),
            (f"rate({m('db_pool_checkout_timeouts_total')}{POOL}{RATE})", "{{pool}} timeouts/s"),
            (f"{m('db_pool_waiting_requests')}{POOL}", "{{pool}} waiting"),
        ]),
        ("Connection churn", "New connections and why old ones went: errors, age, "
         "disconnects (a Neon compute suspending shows here).", "ops", [
            (f"rate({m('db_pool_connects_total')}{POOL}{RATE})", "{{pool}} connects/s"),
            (f"rate({m('db_pool_invalidated_total')}{POOL}{RATE})", "{{pool}} invalidated/s"),
            (f"rate({m('db_pool_recycled_total')}{POOL}{RATE})", "{{pool}} recycled/s"),
            (f"rate({m('db_pool_disconnects_recovered_total')}{POOL}{RATE})",
             "{{pool}} disconnects recovered/s"),
            (f"rate({m('db_pool_disconnect_errors_total')}{POOL}{RATE})",
             "{{pool}} disconnect errors/s"),
        ]),
        ("Leaks", "Connections held past DB_POOL_LEAK_SECONDS; the log names the code.",
         "short", [
            (f"{m('db_pool_leaked_connections')}{POOL}", "{{pool}} leaked now"),
            (f"increase({m('db_pool_leaks_total')}{POOL}{RATE})", "{{pool}} new leaks"),
        ]),
        ("Database health", "The last GET /health/db: up (1) or not, and its latency.", "s", [
            (m("db_health_up"), "up"),
            (m("db_health_latency_seconds"), "latency"),
        ]),
    ]  # fmt: skip
    return [_panel(i, *spec) for i, spec in enumerate(specs, 1)]


def dashboard() -> dict:
    return {
        "title": "Database: pool and health",
        "uid": "neon-db-pool",
        "tags": ["database", "postgresql", "neon"],
        "timezone": "browser",
        "schemaVersion": 39,
        "refresh": "30s",
        "time": {"from": "now-6h", "to": "now"},
        "templating": {
            "list": [
                {
                    "name": "datasource",
                    "label": "Prometheus",
                    "type": "datasource",
                    "query": "prometheus",
                },
                {
                    "name": "pool",
                    "label": "Pool",
                    "type": "query",
                    "datasource": DATASOURCE,
                    "query": f"label_values({m('db_pool_checkouts_total')}, pool)",
                    "includeAll": True,
                    "multi": True,
                    "current": {"text": "All", "value": "$__all"},
                    "refresh": 2,
                },
            ]
        },
        "panels": panels(),
    }


def render() -> str:
    return json.dumps(dashboard(), indent=2) + "\n"
