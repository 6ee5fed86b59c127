"""Connections checked out for too long: who took them, said once per connection.

A leaked connection never comes back, so no pool event would ever notice it: a small
watcher thread looks at the checked-out connections instead. Where each one was checked
out is recorded only while the warning is on (DB_POOL_LEAK_SECONDS > 0): walking the
stack costs microseconds per checkout, which nobody should pay for a feature that is off.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import sqlalchemy

if TYPE_CHECKING:
    from neon_migrate.observe.pool_stats import PoolStats

log = logging.getLogger("neon_migrate.pool")

Frame = tuple[str, int, str]  # file, line, function
STACK_FRAMES = 6  # frames of the caller's own code kept per checkout


def _library_folders() -> tuple[str, ...]:
    """Code that checks connections out on someone's behalf: never the one to blame."""
    folders = [os.path.dirname(sqlalchemy.__file__), os.path.dirname(__file__)]
    folders.append(contextlib.__file__)
    for name in ("sqlmodel",):
        module = sys.modules.get(name)
        if module is not None and module.__file__:
            folders.append(os.path.dirname(module.__file__))
    return tuple(folders)


_LIBRARY = _library_folders()


def caller_stack() -> tuple[Frame, ...]:
    """The innermost frames outside SQLAlchemy, SQLModel and neon_migrate: who asked.

    The async engine checks out inside a greenlet whose frames end at SQLAlchemy's
    greenlet_spawn; the caller's coroutine is on the parent greenlet's stack.
    """
    frame = sys._getframe(1)
    runner = sys.modules.get("greenlet")
    current = runner.getcurrent() if runner is not None else None
    kept: list[Frame] = []
    while len(kept) < STACK_FRAMES:
        if frame is None:
            current = current.parent if current is not None else None
            if current is None:
                break
            frame = current.gr_frame
            continue
        code = frame.f_code
        if kept or not code.co_filename.startswith(_LIBRARY):
            kept.append((code.co_filename, frame.f_lineno, code.co_name))
        frame = frame.f_back
    return tuple(kept)


@dataclass
class CheckedOut:
    since: float  # time.monotonic() at checkout
    stack: tuple[Frame, ...] | None = None  # None: not recorded (leak warnings off)
    reported: bool = False

    def location(self) -> str:
        if self.stack is None:
            return "an unrecorded place (set DB_POOL_LEAK_SECONDS to record it)"
        if not self.stack:
            return "a place outside any Python caller"
        path, line, function = self.stack[0]
        return f"{_short(path)}:{line} in {function}"

    def trail(self) -> str:
        return " <- ".join(f"{_short(p)}:{n} {f}" for p, n, f in self.stack or ())


def _short(path: str) -> str:
    """Paths relative to the working folder, so a log line names no machine."""
    try:
        relative = os.path.relpath(path)
    except ValueError:
        return os.path.basename(path)
    return relative if not relative.startswith("..") else os.path.basename(path)


class LeakWatch:
    """Wakes a few times per threshold and reports each overdue connection once."""

    def __init__(self, stats: PoolStats, seconds: float) -> None:
        self.stats, self.seconds = stats, seconds
        self.stopping = threading.Event()
        self.thread = threading.Thread(
            target=self._run, name=f"db-leak-watch-{stats.name}", daemon=True
        )

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.stopping.set()

    def _run(self) -> None:
        interval = min(max(self.seconds / 4, 0.05), 5.0)
        while not self.stopping.wait(interval):
            self.check()

    def check(self) -> None:
        stats, now = self.stats, time.monotonic()
        overdue = []
        with stats.lock:
            for entry in list(stats.out.values()):  # a checkin may run in here (GC)
                if not entry.reported and now - entry.since >= self.seconds:
                    entry.reported = True
                    stats.leaks += 1
                    overdue.append(entry)
        for entry in overdue:
            log.warning(
                "%s pool: a connection has been checked out for %.1f s (over "
                "DB_POOL_LEAK_SECONDS=%g), checked out at %s; stack: %s",
                stats.name,
                now - entry.since,
                self.seconds,
                entry.location(),
                entry.trail(),
            )
