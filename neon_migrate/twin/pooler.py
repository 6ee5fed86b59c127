"""PgBouncer in transaction mode in front of the local server: Neon's pooled door, locally.

Neon's pooled endpoint is PgBouncer in transaction mode behind TLS. Code that works on a
direct connection can still break there (session SET, advisory locks, SQL PREPARE,
unknown startup parameters), so the app side is proven against the same pooler,
configured as Neon's is: transaction mode, SCRAM passwords, TLS for clients, and
protocol-level prepared statements passed through (`max_prepared_statements`, PgBouncer
1.21+: the cached build from neon_migrate.twin.provision, preferred to the system's).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
import subprocess
from dataclasses import dataclass
from pathlib import Path

from neon_migrate.errors import HarnessError
from neon_migrate.twin import provision
from neon_migrate.twin.daemon import answers, locked, read_state, runs_with, terminate, write_state
from neon_migrate.twin.local import (
    HOST,
    LocalServerInfo,
    add_mode,
    free_port,
    port_free,
    service_account,
)

CONFIG = """\
[databases]
* = host={host} port={server_port}

[pgbouncer]
listen_addr = {host}
listen_port = {port}
unix_socket_dir =
pool_mode = transaction
auth_type = scram-sha-256
auth_file = {root}/userlist.txt
max_client_conn = 1000
default_pool_size = 20
; As Neon's pooler: a transaction waits at most 120 s for a server connection; and a
; server that restarts is retried after 1 s, not PgBouncer's default 15 s.
query_wait_timeout = 120
server_login_retry = 1
client_tls_sslmode = require
client_tls_cert_file = {cert}
client_tls_key_file = {key}
server_tls_sslmode = {server_tls}
logfile = {root}/pgbouncer.log
pidfile = {root}/pgbouncer.pid
{extra}"""


@dataclass(frozen=True)
class PoolerInfo:
    host: str
    port: int
    started: bool
    log_file: Path
    version: str = ""  # e.g. "1.24.1"; "" when the binary does not say

    @property
    def prepares(self) -> bool:
        """Whether protocol-level prepared statements pass, as on Neon's pooler."""
        return provision.prepares(self.version)


def pgbouncer_path() -> str | None:
    """The cached PgBouncer >= 1.21 (neon_migrate.twin.provision), else the installed one."""
    built = provision.cached_pgbouncer()
    if built is not None and provision.prepares(built.version):
        return str(built.path)
    return shutil.which("pgbouncer") or shutil.which("pgbouncer", path="/usr/sbin:/usr/bin")


class LocalPooler:
    def __init__(self, root: Path, extra: dict[str, str] | None = None) -> None:
        self.root = Path(root).absolute()
        self.extra = dict(extra or {})  # more [pgbouncer] settings (tests: other poolers)
        self.state_file = self.root / "pooler.json"
        self.log_file = self.root / "pgbouncer.log"
        self.pid_file = self.root / "pgbouncer.pid"

    def start(self, server: LocalServerInfo) -> PoolerInfo:
        """Start PgBouncer for `server`, or reuse the one running for it."""
        with locked(self.root):
            return self._start(server)

    def stop(self) -> bool:
        with locked(self.root):
            return self._stop()

    def status(self, server: LocalServerInfo) -> PoolerInfo | None:
        """The running PgBouncer for `server`, or None; starts nothing."""
        state = self._state()
        if self._pid() and state.get("server_port") == server.port:
            return self._info(state["port"], False, state.get("exe"))
        return None

    def _info(self, port: int, started: bool, exe: str | None) -> PoolerInfo:
        version = provision.pgbouncer_version(exe) if exe else ""
        return PoolerInfo(HOST, port, started, self.log_file, version)

    def _start(self, server: LocalServerInfo) -> PoolerInfo:
        exe = pgbouncer_path()
        if exe is None:
            raise HarnessError("pgbouncer is not installed", "apt-get install pgbouncer")
        state = self._state()
        if self._pid() and state.get("server_port") == server.port and state.get("exe") == exe:
            return self._info(state["port"], False, exe)
        self._stop()  # not running, or running for a server that has since moved
        self.pid_file.unlink(missing_ok=True)  # stale: pgbouncer refuses to start over one
        port = state.get("port") if state.get("port") and port_free(state["port"]) else None
        port = port or free_port()
        self._write_config(server, port, provision.prepares(provision.pgbouncer_version(exe)))
        account = service_account()
        args = [exe, "-d", *(["-u", account.pw_name] if account else []), str(self._ini)]
        result = subprocess.run(args, capture_output=True, text=True, timeout=30)
        if result.returncode or not answers(port):
            detail = (result.stderr.strip().splitlines() or [""])[-1] or _last_log_line(
                self.log_file
            )
            raise HarnessError(
                f"pgbouncer did not start on port {port}: {detail}", f"see {self.log_file}"
            )
        state = {"port": port, "server_port": server.port, "exe": exe}
        write_state(self.state_file, state)
        return self._info(port, True, exe)

    def _stop(self) -> bool:
        pid = self._pid()
        if pid is None:
            return False
        terminate(pid, gone=lambda: self._pid() is None)  # SIGTERM: as `SHUTDOWN` on its console
        return True

    @property
    def _ini(self) -> Path:
        return self.root / "pgbouncer.ini"

    def _write_config(self, server: LocalServerInfo, port: int, prepares: bool) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        certs = server.certificates
        extra = dict(self.extra)
        if prepares:  # Neon's pooler setting; the tests' `extra` may say otherwise
            extra.setdefault("max_prepared_statements", str(provision.MAX_PREPARED_STATEMENTS))
        self._ini.write_text(
            CONFIG.format(
                host=HOST, server_port=server.port, port=port, root=self.root,
                cert=certs.cert_file, key=certs.key_file,
                server_tls="require" if server.tls else "disable",
                extra="".join(f"{k} = {v}\n" for k, v in extra.items()),
            )
        )  # fmt: skip
        userlist = self.root / "userlist.txt"
        fd = os.open(userlist, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)  # a password
        with os.fdopen(fd, "w") as f:
            f.write(f'"{server.user}" "{server.password}"\n')
        account = service_account()
        if account is not None:  # pgbouncer drops to this user, then writes its pid and log
            for folder in self.root.parents:  # it must pass through them (o+x only)
                add_mode(folder, stat.S_IXOTH)
            for path in (self.root, userlist, self._ini):
                os.chown(path, account.pw_uid, account.pw_gid)
            self.log_file.touch()
            os.chown(self.log_file, account.pw_uid, account.pw_gid)

    def _state(self) -> dict:
        return read_state(self.state_file) or {}

    def _pid(self) -> int | None:
        """The pid of *our* pgbouncer if it runs: its command line names our ini file. A
        stale pid file (the pid reused by another process, or another pgbouncer) is None."""
        try:
            pid = int(self.pid_file.read_text().strip())
        except (OSError, ValueError):
            return None
        return pid if runs_with(pid, str(self._ini)) else None


def _last_log_line(log_file: Path) -> str:
    with contextlib.suppress(OSError):
        lines = log_file.read_text(errors="replace").strip().splitlines()
        return lines[-1] if lines else ""
    return ""
