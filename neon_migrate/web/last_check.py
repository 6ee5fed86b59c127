"""The last /health/db answer, kept for the metrics (`db_health_up`).

Scraping never queries the database: a scrape every 15 s from each of several Prometheus
servers would otherwise keep a Neon compute from ever scaling to zero. The readiness
probe's calls to /health/db keep these figures fresh instead.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass


@dataclass(frozen=True)
class LastCheck:
    healthy: bool
    latency_seconds: float | None
    at: float  # time.time()


_LOCK = threading.Lock()
_LAST: LastCheck | None = None


def record(healthy: bool, latency_seconds: float | None) -> None:
    global _LAST
    with _LOCK:
        _LAST = LastCheck(healthy, latency_seconds, time.time())


def last() -> LastCheck | None:
    with _LOCK:
        return _LAST
