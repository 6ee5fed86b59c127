"""Start, find and stop the Neon API stand-in: the twin's side of its process.

The server runs as its own daemon (routes.py), outliving the command that started it, as
PgBouncer does; this module is what the twin's lifecycle calls, on the lifecycle the
twin's daemons share (daemon.py): `running.json` says where it listens, and
`standin.json` (mode 0600) holds its configuration and API key.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from neon_migrate.errors import HarnessError
from neon_migrate.twin.daemon import (
    HOST,
    answers,
    locked,
    read_state,
    runs_with,
    terminate,
    write_state,
)

API_PREFIX = "/api/v2"
FOLDER = "neon-api"  # under the twin's root, beside pg/ and pgbouncer/
MODULE = "neon_migrate.twin.standin.routes"


@dataclass(frozen=True)
class StandinInfo:
    """A running stand-in: the Neon API base URL, key and project ID to use."""

    host: str
    port: int
    api_key: str = field(repr=False)
    project_id: str
    started: bool  # True if this call started it
    log_file: Path
    key_file: Path  # where the key is kept (mode 0600)

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}{API_PREFIX}"


def start_standin(
    root: Path,
    server: Any,
    bin_dir: Path,
    *,
    pooler_port: int | None = None,
    reap_interval_s: float = 5.0,
) -> StandinInfo:
    """Start the stand-in for the twin under `root` (or reuse the one running for this
    server). `server` is the twin's LocalServerInfo (host, port, user, password, database,
    tls); `bin_dir` holds its pg_dump and pg_restore; `pooler_port` the twin's PgBouncer."""
    folder = _folder(root)
    with locked(folder):
        running = _running(folder)
        if running and running.get("server_port") == server.port:
            return _info(folder, running, started=False)
        _stop(folder)  # not running, or running for a server that has since moved
        config = {
            "token": secrets.token_urlsafe(32),
            "pg": {
                "host": server.host,
                "port": server.port,
                "user": server.user,
                "password": server.password,
                "database": server.database,
                "tls": bool(server.tls),
            },
            "bin_dir": str(bin_dir),
            "pooler_port": pooler_port,
            "reap_interval_s": reap_interval_s,
            "port": (read_state(folder / "running.json") or {}).get("port"),  # keep it if free
        }
        write_state(folder / "standin.json", config)
        (folder / "running.json").unlink(missing_ok=True)
        _spawn(folder)
        running = _wait_until_running(folder)
        return _info(folder, running, started=True)


def standin_status(root: Path, server: Any | None = None) -> StandinInfo | None:
    """The running stand-in (for `server`, when given), or None; starts nothing."""
    folder = Path(root).absolute() / FOLDER
    running = _running(folder)
    if running is None or (server is not None and running.get("server_port") != server.port):
        return None
    return _info(folder, running, started=False)


def stop_standin(root: Path) -> bool:
    """Stop the stand-in; True if it was running. Its branches' databases stay (as branches
    stay on Neon) and are served again by the next start."""
    folder = Path(root).absolute() / FOLDER
    if not folder.is_dir():
        return False
    with locked(folder):
        return _stop(folder)


def _folder(root: Path) -> Path:
    folder = Path(root).absolute() / FOLDER
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _info(folder: Path, running: dict, started: bool) -> StandinInfo:
    config = read_state(folder / "standin.json") or {}
    return StandinInfo(
        host=HOST,
        port=running["port"],
        api_key=config.get("token", ""),
        project_id=running["project_id"],
        started=started,
        log_file=folder / "standin.log",
        key_file=folder / "standin.json",
    )


def _spawn(folder: Path) -> None:
    package_root = str(Path(__file__).resolve().parents[3])  # found even if not installed
    path = os.environ.get("PYTHONPATH")
    env = dict(os.environ, PYTHONPATH=package_root + (os.pathsep + path if path else ""))
    with open(folder / "standin.log", "ab") as out:
        first = subprocess.run(  # forks the server and returns: it outlives us
            [sys.executable, "-m", MODULE, "serve", str(folder), "--daemon"],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=folder,
            timeout=30,
            check=False,
        )
    if first.returncode:
        raise _failure(folder, f"the Neon API stand-in did not start (exit {first.returncode})")


def _wait_until_running(folder: Path, seconds: float = 20) -> dict:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        running = _running(folder)
        if running and answers(running["port"], seconds=1):
            return running
        time.sleep(0.05)
    _stop(folder)
    raise _failure(folder, f"the Neon API stand-in did not answer within {seconds:g} s")


def _failure(folder: Path, what: str) -> HarnessError:
    lines = []
    with contextlib.suppress(OSError):
        lines = [
            ln
            for ln in (folder / "standin.log").read_text(errors="replace").splitlines()
            if ln.strip()
        ]
    detail = f": {lines[-1].strip()}" if lines else ""
    return HarnessError(what + detail, f"see {folder / 'standin.log'}; `make db-down` and retry")


def _running(folder: Path) -> dict | None:
    """running.json of *our* live stand-in: its pid's command line names our folder."""
    running = read_state(folder / "running.json")
    if running and runs_with(running.get("pid"), MODULE, str(folder)):
        return running
    return None


def _stop(folder: Path) -> bool:
    running = _running(folder)
    if running is None:
        return False
    terminate(running["pid"], gone=lambda: _running(folder) is None)
    (folder / "running.json").unlink(missing_ok=True)
    return True
