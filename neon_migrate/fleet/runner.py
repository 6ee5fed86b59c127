"""Run the targets' processes: the canary alone first, then at most N at once.

- A canary that does not end at the wanted revision stops the run before any other
  target is touched, even with --keep-going: that is what a canary is for.
- After it, a failure stops new starts unless --keep-going; running targets finish.
- SIGINT / SIGTERM: no new target starts, and each running target's process gets the
  signal once (it is in its own process group, so a terminal's Ctrl-C does not reach it
  twice: a second signal kills `migrate` at once). It cancels its statement, rolls back
  and releases its lock as `migrate` does; the report says how each target ended.
"""

from __future__ import annotations

import signal
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from neon_migrate.fleet import worker

SIGNALS = (signal.SIGINT, signal.SIGTERM)
OK = ("applied", "at-head", "read")  # "read": fleet status, which changes nothing


@dataclass
class Entry:
    """A target to run: a job, or why it cannot run (said at its turn, as a failure)."""

    name: str
    job: worker.Job | None
    problem: str | None = None


class Runner:
    def __init__(
        self,
        concurrency: int,
        keep_going: bool,
        started: Callable[[str, bool], None],
        ended: Callable[[str, dict[str, Any]], None],
    ) -> None:
        self.concurrency = concurrency
        self.keep_going = keep_going
        self.started, self.ended = started, ended
        self.results: dict[str, dict[str, Any]] = {}
        self.signals: list[int] = []
        self.stopped: str | None = None  # why no new target starts
        self._running: dict[str, tuple[Any, Any, float]] = {}  # name: (process, pipe, start)
        self._ctx = None

    def run(self, canary: list[Entry], rest: list[Entry]) -> dict[str, dict[str, Any]]:
        if any(entry.job for entry in [*canary, *rest]):
            self._ctx = worker.context()  # started now: it must not inherit a blocked signal
        with self._forwarding_signals():
            for entry in canary:
                with _signals_held():
                    if self.stopped:
                        break
                    self._start(entry, canary=True)
                self._collect_all()
                if self.results[entry.name]["outcome"] not in OK:
                    self.stopped = self.stopped or f"the canary {entry.name} did not succeed"
            waiting = deque(rest)
            while waiting or self._running:
                while waiting and len(self._running) < self.concurrency:
                    with _signals_held():  # no signal between this check and the start
                        if self.stopped:
                            break
                        self._start(waiting.popleft(), canary=False)
                if not self._running:
                    break
                self._collect(timeout=0.5)
        for entry in [*canary, *rest]:
            self.results.setdefault(entry.name, {"outcome": "not-run", "error": None})
        return self.results

    # --- one target ---------------------------------------------------------------------------
    def _start(self, entry: Entry, canary: bool) -> None:
        self.started(entry.name, canary)
        if entry.job is None:
            self._end(
                entry.name,
                {"outcome": "failed", "error": entry.problem, "exit_code": 2},
                time.monotonic(),
            )
            return
        reader, writer = self._ctx.Pipe(duplex=False)
        process = self._ctx.Process(
            target=worker.run, args=(entry.job, writer), name=f"fleet {entry.name}"
        )
        began = time.monotonic()
        process.start()
        writer.close()
        self._running[entry.name] = (process, reader, began)

    def _collect_all(self) -> None:
        while self._running:
            self._collect(timeout=0.5)

    def _collect(self, timeout: float) -> None:
        from multiprocessing.connection import wait

        handles = {}
        for name, (process, reader, _) in self._running.items():
            handles[reader] = handles[process.sentinel] = name
        for ready in wait(list(handles), timeout=timeout):
            name = handles[ready]
            if name not in self._running:
                continue  # its pipe and its sentinel were both ready
            process, reader, began = self._running[name]
            if ready is process.sentinel and not reader.poll(0):
                result = self._died(process, self.signals)
            else:
                try:
                    result = reader.recv()
                except (EOFError, OSError):
                    result = self._died(process, self.signals)
            del self._running[name]
            reader.close()
            process.join(timeout=30)
            self._end(name, result, began)

    @staticmethod
    def _died(process, signals: list[int]) -> dict[str, Any]:
        """A process that could not report: a signal that came before its handlers were
        set (it names the signal the run got), or a crash."""
        process.join(timeout=5)
        code = process.exitcode
        how = f"exit code {code}"
        if code is not None and code < 0:
            how = f"ended by {signal.Signals(-code).name}"
        elif signals:
            how += f", after the run got {signal.Signals(signals[0]).name}"
        return {
            "outcome": "failed",
            "exit_code": 1,
            "error": f"its process ended before it reported ({how}); where its database "
            "is, `neon-migrate fleet status` says",
        }

    def _end(self, name: str, result: dict[str, Any], began: float) -> None:
        result["duration_ms"] = round((time.monotonic() - began) * 1000)
        self.results[name] = result
        if result["outcome"] not in OK and not self.keep_going and not self.stopped:
            self.stopped = f"{name} did not succeed (--keep-going goes on after a failure)"
        self.ended(name, result)

    # --- signals ------------------------------------------------------------------------------
    @contextmanager
    def _forwarding_signals(self) -> Iterator[None]:
        previous = {sig: signal.signal(sig, self._on_signal) for sig in SIGNALS}
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def _on_signal(self, signum: int, _frame) -> None:
        self.signals.append(signum)
        self.stopped = self.stopped or f"{signal.Signals(signum).name} received"
        for process, _, _ in list(self._running.values()):
            self._signal(process, signum)

    @staticmethod
    def _signal(process, signum: int) -> None:
        try:
            if process.pid:
                import os

                os.kill(process.pid, signum)
        except ProcessLookupError:
            pass


@contextmanager
def _signals_held() -> Iterator[None]:
    """SIGINT and SIGTERM wait (blocked, not lost) while a target starts: the handler then
    finds it among the running ones and forwards the signal to it too."""
    signal.pthread_sigmask(signal.SIG_BLOCK, SIGNALS)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, SIGNALS)
