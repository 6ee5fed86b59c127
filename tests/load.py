"""The local-Neon load test's loop: threads sending requests through one engine.

Shared by tests/test_pooler.py (which asserts on it) and `make bench` P6 (which times it
with and without the pool statistics), so the figure in the note is the test's own load.
"""

from __future__ import annotations

import statistics
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

THREADS, REQUESTS = 32, 50


def percentile(values: list[float], q: int) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]


@dataclass
class Load:
    elapsed: float = 0.0
    latencies: list[float] = field(default_factory=list)
    errors: list[BaseException] = field(default_factory=list)

    @property
    def per_second(self) -> float:
        return len(self.latencies) / self.elapsed


def run_load(request: Callable[[], None], threads: int = THREADS, each: int = REQUESTS) -> Load:
    """`request()` `each` times on each of `threads` threads; failures are collected."""
    load = Load()

    def worker() -> None:
        for _ in range(each):
            started = time.perf_counter()
            try:
                request()
            except BaseException as exc:
                load.errors.append(exc)
            load.latencies.append(time.perf_counter() - started)

    workers = [threading.Thread(target=worker) for _ in range(threads)]
    started = time.perf_counter()
    for thread in workers:
        thread.start()
    for thread in workers:
        thread.join()
    load.elapsed = time.perf_counter() - started
    return load
