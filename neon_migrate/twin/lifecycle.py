"""The local twin of Neon: PostgreSQL as the direct door, PgBouncer as the pooled door.

Used when no URL is configured (`make migrate`, `make db-up`). Without pgbouncer
installed, the direct server stands in for both doors, and `describe()` says so.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from neon_migrate.twin.local import LocalServer, LocalServerInfo
from neon_migrate.twin.pooler import LocalPooler, PoolerInfo, pgbouncer_path


@dataclass(frozen=True)
class LocalTwin:
    server: LocalServerInfo
    pooler: PoolerInfo | None  # None when pgbouncer is not installed
    state_file: Path  # where the password is kept

    @property
    def direct_url(self) -> str:
        return self.server.url

    @property
    def pooled_url(self) -> str:
        if self.pooler is None:
            return self.server.url
        return self.server.url_for(self.server.database, self.pooler.port) + "?sslmode=require"

    def describe(self) -> list[str]:
        s = self.server
        state = "started" if s.started else "already running"
        tls = "TLS on" if s.tls else "TLS off: this PostgreSQL build has no SSL support"
        lines = [f"local PostgreSQL {s.version} ({tls}) {state} at {s.host}:{s.port}"]
        if self.pooler is None:
            lines.append("pgbouncer is not installed: the direct server stands in for the pooler")
        else:
            p = self.pooler
            state = "started" if p.started else "already running"
            lines.append(f"PgBouncer (transaction mode, TLS on) {state} at {p.host}:{p.port}")
        return lines


def _parts(root: Path, bin_dir: Path | None) -> tuple[LocalServer, LocalPooler]:
    return LocalServer(root / "pg", bin_dir=bin_dir), LocalPooler(root / "pgbouncer")


def start_twin(root: Path, bin_dir: Path | None = None) -> LocalTwin:
    server, pooler = _parts(root, bin_dir)
    for part in (server.root, pooler.root):
        keep_out_of_git(part)
    info = server.start()
    pooled = pooler.start(info) if pgbouncer_path() else None
    return LocalTwin(server=info, pooler=pooled, state_file=server.state_file)


def running_twin(root: Path, bin_dir: Path | None = None) -> LocalTwin | None:
    """The twin `make db-up` (or a CLI command) started, if it runs; never starts one."""
    server, pooler = _parts(root, bin_dir)
    info = server.status()
    if info is None:
        return None
    pooled = pooler.status(info) if pgbouncer_path() else None
    if pgbouncer_path() and pooled is None:  # half a twin: `make db-up` restarts the rest
        return None
    return LocalTwin(server=info, pooler=pooled, state_file=server.state_file)


def keep_out_of_git(folder: Path) -> None:
    """The twin's folders hold a password and a TLS key: git ignores them wherever they
    live (LOCAL_DB_DIR=.local15 as much as .local), as a virtualenv ignores itself. Only
    the folders the twin owns (pg/, pgbouncer/) get one: LOCAL_DB_DIR itself may be shared."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / ".gitignore").write_text("# the local twin's state (a password, a TLS key)\n*\n")


def stop_twin(root: Path, bin_dir: Path | None = None) -> tuple[bool, bool]:
    """Stop both; (server was running, pooler was running)."""
    server, pooler = _parts(root, bin_dir)
    return server.stop(), pooler.stop()
