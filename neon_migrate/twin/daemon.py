"""What the twin's three daemons share: PostgreSQL, PgBouncer and the Neon API stand-in.

Each outlives the command that started it and keeps its own folder. Parallel commands
(eight `alembic upgrade` at once with no URL set) must start one of each, so every start
and stop holds the folder's lock; what a daemon's starter must remember (its port, the
server it serves, a password or API key) is a JSON file readable by its owner only; and a
pid is ours only while the process's command line still names our folder, so a stale
pid reused by another process is never signalled. Stopping is SIGTERM, then SIGKILL after
five seconds.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import signal
import socket
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

HOST = "127.0.0.1"


@contextlib.contextmanager
def locked(folder: Path) -> Iterator[None]:
    """The daemon's folder (created if need be) held by this process alone."""
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / ".lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def read_state(path: Path) -> dict | None:
    """A state file's JSON object; None when it is missing or unreadable."""
    try:
        value = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) else None


def write_state(path: Path, data: dict) -> None:
    """Write JSON atomically, readable by its owner only (it may hold a secret)."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}-")
    try:
        with os.fdopen(fd, "w") as f:  # mkstemp: mode 0600
            json.dump(data, f, indent=1)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def runs_with(pid: int | None, *words: str) -> bool:
    """Whether process `pid` runs with each of `words` as one of its arguments."""
    if not isinstance(pid, int):
        return False
    try:
        arguments = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return all(word.encode() in arguments for word in words)


def terminate(pid: int, gone: Callable[[], bool], seconds: float = 5.0) -> None:
    """SIGTERM to `pid`; SIGKILL if `gone()` is still false `seconds` later."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if gone():
            _until_exited(pid, 1.0)
            return
        time.sleep(0.05)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


def _until_exited(pid: int, seconds: float) -> None:
    """An exiting process stops naming our folder (its memory, command line included, goes
    first) a moment before it has exited: wait for that moment, never signal it again."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            return  # gone
        if state in ("Z", "X"):
            return  # exited; its parent (or init) reaps it
        time.sleep(0.01)


def answers(port: int, seconds: float = 10) -> bool:
    """Whether something accepts connections on HOST:port within `seconds`."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection((HOST, port), timeout=1):
            return True
        time.sleep(0.05)
    return False
