"""The local twin of Neon: PostgreSQL as the direct door, PgBouncer as the pooled door,
and a stand-in of Neon's HTTP API for branches (neon_migrate/twin/standin/).

Used when no URL is configured (`make migrate`, `make db-up`). Without pgbouncer
installed, the direct server stands in for both doors, and `describe()` says so.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from neon_migrate.observe.sizing import pgbouncer_limits
from neon_migrate.twin import provision
from neon_migrate.twin.local import LocalServer, LocalServerInfo
from neon_migrate.twin.pooler import LocalPooler, PoolerInfo, pgbouncer_path
from neon_migrate.twin.standin import FOLDER as API_FOLDER
from neon_migrate.twin.standin import StandinInfo, standin_status, start_standin, stop_standin


@dataclass(frozen=True)
class LocalTwin:
    server: LocalServerInfo
    pooler: PoolerInfo | None  # None when pgbouncer is not installed
    state_file: Path  # where the password is kept
    # The Neon API stand-in: base_url, api_key, project_id for neon_migrate.branches.api.
    # None when it is not running (running_twin() of a twin started before it existed).
    api: StandinInfo | None = None
    # Why the pooled door is stricter than Neon's (no PgBouncer >= 1.21 could be built).
    pooler_fallback: str | None = None

    @property
    def direct_url(self) -> str:
        return self.server.url

    @property
    def pooled_url(self) -> str:
        if self.pooler is None:
            return self.server.url
        return self.server.url_for(self.server.database, self.pooler.port) + "?sslmode=require"

    def pool_limits(self) -> dict[str, int]:
        """The pooled door's PgBouncer limits, for the pools' ceiling ({} without one)."""
        if self.pooler is None:
            return {}
        return pgbouncer_limits(self.pooler.log_file.with_name("pgbouncer.ini"))

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
            most = provision.MAX_PREPARED_STATEMENTS
            prepared = (
                f"prepared statements passed, max_prepared_statements={most}"
                if p.prepares
                else "protocol-level prepared statements rejected, unlike Neon's pooler"
            )
            lines.append(
                f"PgBouncer {p.version or '(version unknown)'} (transaction mode, TLS on, "
                f"{prepared}) {state} at {p.host}:{p.port}"
            )
        if self.pooler_fallback:
            lines.append(self.pooler_fallback)
        if self.api is not None:
            a = self.api
            state = "started" if a.started else "already running"
            lines.append(f"Neon API stand-in {state} at {a.base_url} (project {a.project_id})")
        return lines


def _parts(root: Path, bin_dir: Path | None) -> tuple[LocalServer, LocalPooler]:
    return LocalServer(root / "pg", bin_dir=bin_dir), LocalPooler(root / "pgbouncer")


def start_twin(root: Path, bin_dir: Path | None = None) -> LocalTwin:
    server, pooler = _parts(root, bin_dir)
    for part in (server.root, pooler.root, Path(root) / API_FOLDER):
        keep_out_of_git(part)
    info = server.start()
    fallback = ensure_pgbouncer()
    pooled = pooler.start(info) if pgbouncer_path() else None
    api = start_standin(root, info, server.bin_dir, pooler_port=pooled.port if pooled else None)
    return LocalTwin(server=info, pooler=pooled, state_file=server.state_file, api=api,
                     pooler_fallback=fallback)  # fmt: skip


def ensure_pgbouncer() -> str | None:
    """Build the PgBouncer Neon's pooler matches, once (cached); None when there is one,
    else the line that says why the pooled door is stricter than Neon's."""
    try:
        provision.build_pgbouncer()
    except provision.ProvisionError as err:
        return provision.pgbouncer_fallback(err.cause)
    return None


def running_twin(root: Path, bin_dir: Path | None = None) -> LocalTwin | None:
    """The twin `make db-up` (or a CLI command) started, if it runs; never starts one."""
    server, pooler = _parts(root, bin_dir)
    info = server.status()
    if info is None:
        return None
    pooled = pooler.status(info) if pgbouncer_path() else None
    if pgbouncer_path() and pooled is None:  # half a twin: `make db-up` restarts the rest
        return None
    api = standin_status(root, info)  # None if it is not running: the databases still work
    return LocalTwin(server=info, pooler=pooled, state_file=server.state_file, api=api)


def keep_out_of_git(folder: Path) -> None:
    """The twin's folders hold a password, an API key and a TLS key: git ignores them
    wherever they live (LOCAL_DB_DIR=.local15 as much as .local), as a virtualenv ignores
    itself. Only the folders the twin owns (pg/, pgbouncer/, neon-api/) get one:
    LOCAL_DB_DIR itself may be shared."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / ".gitignore").write_text("# the local twin's state (a password, a TLS key)\n*\n")


def stop_twin(root: Path, bin_dir: Path | None = None) -> tuple[bool, bool, bool]:
    """Stop all three; whether each was running: (server, pooler, API stand-in). The
    stand-in stops first: it copies databases in the background."""
    server, pooler = _parts(root, bin_dir)
    api = stop_standin(root)
    return server.stop(), pooler.stop(), api
