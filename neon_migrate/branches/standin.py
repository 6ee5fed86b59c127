"""A local stand-in for the part of Neon's API that branch rehearsals use (twin only).

It serves one project whose default branch is the local twin's database, with the same
request and response shapes as Neon's API reference (field names, status codes, `423
Locked` while an operation runs, `{"code", "message"}` errors):

    GET    /api/v2/projects/{project_id}/endpoints
    GET    /api/v2/projects/{project_id}/branches          (and .../branches/{branch_id})
    POST   /api/v2/projects/{project_id}/branches          201: branch, endpoints, operations
    DELETE /api/v2/projects/{project_id}/branches/{branch_id}
    GET    /api/v2/projects/{project_id}/operations/{operation_id}
    GET    /api/v2/projects/{project_id}/connection_uri?branch_id&endpoint_id&database_name&
                                                        role_name&pooled

The default branch's endpoint has the host of the twin's direct URL (127.0.0.1), so the
harness finds the parent branch by its DATABASE_URL_DIRECT host as it does on Neon. A new
branch is a **real copy** of its parent's database on the twin's PostgreSQL (`CREATE
DATABASE … TEMPLATE` when no session uses the parent, `pg_dump | pg_restore` otherwise),
made in the background: its operations are `running` until the copy is done, so clients
really wait. Its endpoint's host is a name that resolves nowhere (`ep-….twin.invalid`);
`connection_uri` answers a real URI to the twin (127.0.0.1, the twin's role and password)
naming the branch's own database. Branches past `expires_at` are deleted (checked on
every request and on a timer). Requests need `Authorization: Bearer <token>`; the token is
generated at each start and kept in `<root>/neon-api/standin.json` (mode 0600).

Not Neon's, the stand-in's own test hook: `POST /api/v2/_standin/faults` with
`{"locked": n}` (the next n branch creations/deletions answer 423), `{"fail_operation":
true}` (the next branch's create operation ends `failed`), `{"fail_delete": n | true}`
(the next n DELETEs, or every one until `false`, answer 500); `GET` shows them and the
counts of faults served.

Neon's behaviours past the happy path (the branch limit, annotations, pages, 204 on a
repeated DELETE, `error` operations, a lost creation answer, 429, 412, compute sizes,
compare_schema) are in standin_neon.py, each with its switch in the same hook.

Run by `start_standin()` (the twin's lifecycle) as `python -m neon_migrate.branches.standin
serve <folder> --daemon`: it outlives the command that started it, as PgBouncer does.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import hmac
import json
import logging
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

import psycopg2
from psycopg2 import sql

from neon_migrate.branches.standin_neon import NeonBehaviours
from neon_migrate.errors import HarnessError

HOST = "127.0.0.1"
API_PREFIX = "/api/v2"
FOLDER = "neon-api"  # under the twin's root, beside pg/ and pgbouncer/
MODULE = "neon_migrate.branches.standin"
MAX_EXPIRY = timedelta(days=30)  # as on Neon
ACTIVE = frozenset({"scheduling", "running"})  # operations that lock the project (423)
LOCKED_MESSAGE = (
    "project already has running conflicting operations, scheduling of new ones is prohibited"
)
_RFC3339 = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})")
# Settings whose stored value is a list of (possibly quoted) names, as pg_dump treats them.
_LIST_SETTINGS = frozenset(
    {
        "search_path",
        "temp_tablespaces",
        "session_preload_libraries",
        "local_preload_libraries",
        "shared_preload_libraries",
    }
)

log = logging.getLogger("neon_migrate.standin")


# ==== lifecycle (the twin's side) ===========================================================


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
    with _locked(folder):
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
            "port": (_load(folder / "running.json") or {}).get("port"),  # keep it if free
        }
        _write_private(folder / "standin.json", config)
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
    with _locked(folder):
        return _stop(folder)


def _folder(root: Path) -> Path:
    folder = Path(root).absolute() / FOLDER
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@contextlib.contextmanager
def _locked(folder: Path) -> Iterator[None]:
    with open(folder / ".lock", "a") as lock:  # parallel starts make one stand-in
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def _info(folder: Path, running: dict, started: bool) -> StandinInfo:
    config = _load(folder / "standin.json") or {}
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
    package_root = str(Path(__file__).resolve().parents[2])  # found even if not installed
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
        if running:
            with (
                contextlib.suppress(OSError),
                socket.create_connection((HOST, running["port"]), timeout=1),
            ):
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
    running = _load(folder / "running.json")
    if not running or not isinstance(running.get("pid"), int):
        return None
    try:
        cmdline = Path(f"/proc/{running['pid']}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return None
    if MODULE.encode() in cmdline and str(folder).encode() in cmdline:
        return running
    return None


def _stop(folder: Path) -> bool:
    running = _running(folder)
    if running is None:
        return False
    pid = running["pid"]
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    for _ in range(100):
        if _running(folder) is None:
            break
        time.sleep(0.05)
    else:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    (folder / "running.json").unlink(missing_ok=True)
    return True


def _load(path: Path) -> dict | None:
    try:
        value = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) else None


def _write_private(path: Path, data: dict) -> None:
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


# ==== the server ============================================================================


class ApiError(Exception):
    """An answer other than success: status and Neon's `{"code", "message"}` body."""

    def __init__(self, status: int, message: str, code: str = "") -> None:
        super().__init__(message)
        self.status, self.message, self.code = status, message, code


def _now() -> datetime:
    return datetime.now(UTC)


def _stamp(moment: datetime | None = None) -> str:
    return (moment or _now()).strftime("%Y-%m-%dT%H:%M:%SZ")


def _new_id(prefix: str) -> str:
    return f"{prefix}-twin-{secrets.token_hex(4)}"


class Project:
    """The one project: branches, endpoints, operations; every change under `self.lock`."""

    def __init__(self, folder: Path, config: dict) -> None:
        self.folder = folder
        self.registry_file = folder / "registry.json"
        self.pg = config["pg"]
        self.bin_dir = Path(config["bin_dir"])
        self.pooler_port = config.get("pooler_port")
        self.lock = threading.RLock()
        self.operations: dict[str, dict] = {}
        self.faults = {"locked": 0, "fail_operation": False, "fail_delete": 0}
        self.served = {"locked": 0, "fail_operation": 0, "fail_delete": 0}
        self.children: set[subprocess.Popen] = set()
        self._load_registry()
        self.neon = NeonBehaviours(self, ApiError)  # limits, pages, faults past the happy path

    # --- registry: survives restarts, so branches (databases) are never orphaned
    def _load_registry(self) -> None:
        data = _load(self.registry_file) or {}
        self.project_id = data.get("project_id") or f"twin-{secrets.token_hex(3)}"
        default = data.get("default") or {
            "id": _new_id("br"),
            "endpoint_id": _new_id("ep"),
            "created_at": _stamp(),
        }
        default |= {
            "name": "main",
            "parent_id": None,
            "database": self.pg["database"],
            "host": self.pg["host"],
            "state": "ready",
            "default": True,
            "expires_at": None,
        }
        self.default_id = default["id"]
        self.branches: dict[str, dict] = {default["id"]: default}
        existing = self._databases()
        for branch in data.get("branches", []):
            if branch.get("state") == "ready" and branch.get("database") in existing:
                self.branches[branch["id"]] = branch
            elif branch.get("database") in existing:  # a copy or deletion cut short by a stop
                log.info(
                    "dropping %s: branch %s was left %s",
                    branch["database"],
                    branch["id"],
                    branch.get("state"),
                )
                self._drop(branch["database"])
        self._save()

    def _save(self) -> None:
        others = [b for b in self.branches.values() if not b.get("default")]
        default = {
            k: v
            for k, v in self.branches[self.default_id].items()
            if k in ("id", "endpoint_id", "created_at")
        }
        _write_private(
            self.registry_file,
            {"project_id": self.project_id, "default": default, "branches": others},
        )

    # --- shapes as in Neon's API reference
    def branch_json(self, b: dict) -> dict:
        state = "ready" if b["state"] in ("ready", "deleting") else "init"
        out = {
            "id": b["id"],
            "project_id": self.project_id,
            "name": b["name"],
            "current_state": state,
            "state_changed_at": b.get("updated_at", b["created_at"]),
            "creation_source": "neon-migrate-standin",
            "primary": b["default"],
            "default": b["default"],
            "protected": False,
            "cpu_used_sec": 0,
            "compute_time_seconds": 0,
            "active_time_seconds": 0,
            "written_data_bytes": 0,
            "data_transfer_bytes": 0,
            "created_at": b["created_at"],
            "updated_at": b.get("updated_at", b["created_at"]),
            "init_source": "parent-data",
        }
        if b.get("parent_id"):
            out["parent_id"] = b["parent_id"]
        if b["state"] == "init":
            out["pending_state"] = "ready"
        if b["state"] == "deleting":
            out["pending_state"] = "storage_deleted"
        if b.get("expires_at"):
            out["expires_at"] = b["expires_at"]
            out["ttl_interval_seconds"] = b.get("ttl_interval_seconds")
        return out

    def endpoint_json(self, b: dict) -> dict:
        return {
            "host": b["host"],
            "id": b["endpoint_id"],
            "project_id": self.project_id,
            "branch_id": b["id"],
            "autoscaling_limit_min_cu": self.neon.compute(b)[0],
            "autoscaling_limit_max_cu": self.neon.compute(b)[1],
            "region_id": "local-twin",
            "type": "read_write",
            "current_state": "active" if b["state"] == "ready" else "init",
            "pooler_enabled": False,
            "pooler_mode": "transaction",
            "disabled": False,
            "passwordless_access": False,
            "creation_source": "neon-migrate-standin",
            "created_at": b["created_at"],
            "updated_at": b.get("updated_at", b["created_at"]),
            "proxy_host": "twin.invalid",
            "suspend_timeout_seconds": 0,
            "provisioner": "neon-migrate-standin",
        }

    def _operation(self, branch: dict, action: str, status: str, endpoint: bool = False) -> dict:
        op = {
            "id": str(uuid.uuid4()),
            "project_id": self.project_id,
            "branch_id": branch["id"],
            "action": action,
            "status": status,
            "failures_count": 0,
            "created_at": _stamp(),
            "updated_at": _stamp(),
            "total_duration_ms": 0,
            "_started": time.monotonic(),
        }
        if endpoint:
            op["endpoint_id"] = branch["endpoint_id"]
        self.operations[op["id"]] = op
        return op

    @staticmethod
    def public(op: dict) -> dict:
        return {k: v for k, v in op.items() if not k.startswith("_")}

    def _finish(self, ops: list[dict], status: str, error: str | None = None) -> None:
        for op in ops:
            op["status"] = status
            op["updated_at"] = _stamp()
            op["total_duration_ms"] = int((time.monotonic() - op["_started"]) * 1000)
            if error:
                op["error"] = error
                op["failures_count"] = 1

    # --- the API
    def handle(self, method: str, path: str, query: dict[str, list[str]], body: Any) -> tuple:
        if path in ("/_standin/faults", f"{API_PREFIX}/_standin/faults"):
            return self.fault_hook(method, body)
        if not path.startswith(f"{API_PREFIX}/projects/"):
            raise ApiError(404, "not found")
        parts = path[len(API_PREFIX) + 1 :].split("/")  # projects, id, ...
        if len(parts) < 3 or parts[1] != self.project_id:
            raise ApiError(404, "project not found")
        route = parts[2:]
        with self.lock:
            self.reap()  # expiry is checked on every request (and on a timer)
            answered = self.neon.before(method, route, query, body)  # the branch list too
            if answered is not None:
                return answered
            if route == ["branches"] and method == "POST":
                return self.create_branch(body if isinstance(body, dict) else {})
            if len(route) == 2 and route[0] == "branches" and method == "GET":
                return 200, {"branch": self.branch_json(self._branch(route[1]))}
            if len(route) == 2 and route[0] == "branches" and method == "DELETE":
                return 200, self.delete_branch(route[1])
            if route == ["endpoints"] and method == "GET":
                return 200, {
                    "endpoints": [
                        self.endpoint_json(b) for b in self._listed() if b.get("endpoint_id")
                    ]
                }
            if len(route) == 2 and route[0] == "operations" and method == "GET":
                op = self.operations.get(route[1])
                if op is None:
                    raise ApiError(404, "operation not found")
                return 200, {"operation": self.public(op)}
            if route == ["connection_uri"] and method == "GET":
                return 200, {"uri": self.connection_uri(query)}
        raise ApiError(404 if method == "GET" else 405, f"no route for {method} {path}")

    def _listed(self) -> list[dict]:
        return list(self.branches.values())

    def _branch(self, branch_id: str) -> dict:
        branch = self.branches.get(branch_id)
        if branch is None:
            raise ApiError(404, "branch not found")
        return branch

    def _check_unlocked(self, faults: bool = True) -> None:
        if faults and self.faults["locked"] > 0:
            self.faults["locked"] -= 1
            self.served["locked"] += 1
            raise ApiError(423, LOCKED_MESSAGE + " (stand-in fault hook)")
        if any(op["status"] in ACTIVE for op in self.operations.values()):
            raise ApiError(423, LOCKED_MESSAGE)

    def create_branch(self, body: dict) -> dict:
        spec = body.get("branch") or {}
        endpoints = body.get("endpoints") or []
        if not isinstance(spec, dict) or not isinstance(endpoints, list):
            raise ApiError(400, "invalid request body")
        parent = self._branch(spec.get("parent_id") or self.default_id)
        if parent.get("expires_at"):
            raise ApiError(400, "cannot create a branch from a branch with an expiration time")
        if parent["state"] != "ready":
            raise ApiError(400, f"parent branch {parent['id']} is not ready")
        types = [e.get("type") if isinstance(e, dict) else None for e in endpoints]
        if any(t not in ("read_write", "read_only") for t in types):
            raise ApiError(400, "endpoint type must be read_write or read_only")
        if "read_only" in types:
            raise ApiError(400, "the stand-in serves read_write endpoints only")
        if types.count("read_write") > 1:
            raise ApiError(400, "a branch can have one read_write endpoint")
        expires_at, ttl = self._expiry(spec.get("expires_at"))
        self._check_unlocked()
        branch_id = _new_id("br")
        logical = self.branches[self.default_id]["database"]
        branch = {
            "id": branch_id,
            "name": str(spec.get("name") or branch_id),
            "parent_id": parent["id"],
            "database": f"{logical[:40]}__{branch_id}",
            "endpoint_id": None,
            "host": None,
            "state": "init",
            "default": False,
            "expires_at": expires_at,
            "ttl_interval_seconds": ttl,
            "created_at": _stamp(),
        }
        if types:
            branch["endpoint_id"] = _new_id("ep")
            branch["host"] = f"{branch['endpoint_id']}.twin.invalid"  # resolves nowhere
        ops = [self._operation(branch, "create_branch", "running")]
        if types:
            ops.append(self._operation(branch, "start_compute", "scheduling", endpoint=True))
        fail = self.faults["fail_operation"]
        if fail:
            self.faults["fail_operation"] = False
            self.served["fail_operation"] += 1
        if self.neon.take_error_operation():
            fail = True
            self.neon.error_ops.add(ops[0]["id"])
        self.branches[branch_id] = branch
        self._save()
        worker = threading.Thread(
            target=self._copy,
            args=(branch, parent, ops, fail),
            name=f"copy-{branch_id}",
            daemon=True,
        )
        worker.start()
        answer = {
            "branch": self.branch_json(branch),
            "endpoints": [self.endpoint_json(branch)] if types else [],
            "operations": [self.public(op) for op in ops],
            "roles": [
                {
                    "branch_id": branch_id,
                    "name": self.pg["user"],
                    "protected": False,
                    "created_at": branch["created_at"],
                    "updated_at": branch["created_at"],
                }
            ],
            "databases": [
                {
                    "id": 1,
                    "branch_id": branch_id,
                    "name": logical,
                    "owner_name": self.pg["user"],
                    "created_at": branch["created_at"],
                    "updated_at": branch["created_at"],
                }
            ],
        }
        if types:
            uri = self._uri(branch["database"], pooled=False)
            answer["connection_uris"] = [
                {
                    "connection_uri": uri,
                    "connection_parameters": {
                        "database": logical,
                        "password": self.pg["password"],
                        "role": self.pg["user"],
                        "host": branch["host"],
                        "pooler_host": branch["host"],
                    },
                }
            ]
        return self.neon.created(branch, body, answer, ops)

    def _expiry(self, value: Any) -> tuple[str | None, int | None]:
        if value is None:
            return None, None
        if not isinstance(value, str) or not _RFC3339.fullmatch(value):
            raise ApiError(
                400,
                "expires_at must be an RFC 3339 timestamp with a time zone, "
                "such as 2025-06-09T18:02:16Z",
            )
        moment = datetime.fromisoformat(value.replace("Z", "+00:00")).replace(microsecond=0)
        now = _now()
        if moment <= now:
            raise ApiError(400, "expires_at must be in the future")
        if moment > now + MAX_EXPIRY:
            raise ApiError(400, "expires_at must be at most 30 days from now")
        return _stamp(moment.astimezone(UTC)), int((moment - now).total_seconds())

    def delete_branch(self, branch_id: str, reaping: bool = False) -> dict:
        branch = self._branch(branch_id)
        if branch.get("default"):
            raise ApiError(400, "cannot delete the project's default branch")
        if any(b.get("parent_id") == branch_id for b in self.branches.values()):
            raise ApiError(400, "cannot delete a branch that has child branches")
        if not reaping and self.faults["fail_delete"]:
            if self.faults["fail_delete"] is not True:
                self.faults["fail_delete"] -= 1
            self.served["fail_delete"] += 1
            raise ApiError(500, "internal error (stand-in fault hook: fail_delete)")
        self._check_unlocked(faults=not reaping)
        branch["state"] = "deleting"
        branch["updated_at"] = _stamp()
        self._save()
        ops = [self._operation(branch, "delete_timeline", "running")]
        threading.Thread(
            target=self._delete, args=(branch, ops), name=f"drop-{branch_id}", daemon=True
        ).start()
        return {"branch": self.branch_json(branch), "operations": [self.public(op) for op in ops]}

    def connection_uri(self, query: dict[str, list[str]]) -> str:
        def one(name: str) -> str | None:
            values = query.get(name)
            return values[-1] if values else None

        database, role = one("database_name"), one("role_name")
        if not database or not role:
            raise ApiError(400, "database_name and role_name are required")
        branch = self._branch(one("branch_id") or self.default_id)
        endpoint = one("endpoint_id") or branch.get("endpoint_id")
        if not endpoint or endpoint != branch.get("endpoint_id"):
            raise ApiError(404, "endpoint not found for the branch")
        if database != self.branches[self.default_id]["database"]:
            raise ApiError(404, f"database {database!r} not found")
        if role != self.pg["user"]:
            raise ApiError(404, f"role {role!r} not found")
        if branch["state"] != "ready":
            raise ApiError(400, "the branch is not ready")
        return self._uri(branch["database"], pooled=one("pooled") == "true")

    def _uri(self, database: str, pooled: bool) -> str:
        pg = self.pg
        port = self.pooler_port if pooled and self.pooler_port else pg["port"]
        who = f"{quote(pg['user'], safe='')}:{quote(pg['password'], safe='')}"
        if port == self.pooler_port:  # PgBouncer: TLS always, no SCRAM channel binding
            tls = "?sslmode=require"
        else:  # as Neon's URIs, when this PostgreSQL build has TLS
            tls = "?sslmode=require&channel_binding=require" if pg["tls"] else ""
        return f"postgresql://{who}@{pg['host']}:{port}/{quote(database, safe='')}{tls}"

    def fault_hook(self, method: str, body: Any) -> tuple:
        with self.lock:
            if method == "POST":
                if not isinstance(body, dict):
                    raise ApiError(400, "faults: a JSON object")
                if "locked" in body:
                    self.faults["locked"] = int(body["locked"])
                if "fail_operation" in body:
                    self.faults["fail_operation"] = bool(body["fail_operation"])
                if "fail_delete" in body:
                    value = body["fail_delete"]
                    self.faults["fail_delete"] = value if isinstance(value, bool) else int(value)
                self.neon.configure(body)
            elif method != "GET":
                raise ApiError(405, "faults: GET or POST")
            return 200, {"faults": dict(self.faults), "served": dict(self.served),
                         "neon": self.neon.state()}  # fmt: skip

    # --- expiry
    def reap(self) -> None:
        """Delete branches past `expires_at` (when no operation holds the project)."""
        with self.lock:
            now = _now()
            for branch in list(self.branches.values()):
                due = branch.get("expires_at")
                if not due or branch["state"] != "ready":
                    continue
                if datetime.fromisoformat(due.replace("Z", "+00:00")) > now:
                    continue
                if any(op["status"] in ACTIVE for op in self.operations.values()):
                    return  # as on Neon: deletion happens a little after the time
                log.info("branch %s expired at %s: deleting it", branch["id"], due)
                with contextlib.suppress(ApiError):  # e.g. it has children
                    self.delete_branch(branch["id"], reaping=True)

    # --- background work
    def _copy(self, branch: dict, parent: dict, ops: list[dict], fail: bool) -> None:
        started = time.monotonic()
        error = None
        try:
            if fail:
                time.sleep(0.2)  # clients see it running first
                raise RuntimeError("failed as the stand-in's fault hook asked (fail_operation)")
            how = self._copy_database(parent["database"], branch["database"])
            log.info(
                "branch %s: copied %s into %s by %s in %.2f s",
                branch["id"],
                parent["database"],
                branch["database"],
                how,
                time.monotonic() - started,
            )
        except Exception as exc:  # the operation fails, the server goes on
            error = " ".join(str(exc).split())[:500] or type(exc).__name__
            log.warning("branch %s: copy failed: %s", branch["id"], error)
            with contextlib.suppress(Exception):
                self._drop(branch["database"])
        with self.lock:
            if error:
                self._finish(ops[:1], "failed", error)
                self._finish(ops[1:], "cancelled")
                branch["failed"] = True
            else:
                branch["state"] = "ready"
                branch["updated_at"] = _stamp()
                self._finish(ops, "finished")
            self._save()

    def _delete(self, branch: dict, ops: list[dict]) -> None:
        try:
            self._drop(branch["database"])
        except Exception as exc:
            error = " ".join(str(exc).split())[:500]
            log.warning("branch %s: drop failed: %s", branch["id"], error)
            with self.lock:
                branch["state"] = "ready"  # still there: a later DELETE may succeed
                self._finish(ops, "failed", error)
                self._save()
            return
        with self.lock:
            self.branches.pop(branch["id"], None)
            self._finish(ops, "finished")
            self._save()
        log.info("branch %s deleted (database %s dropped)", branch["id"], branch["database"])

    # --- PostgreSQL
    @contextlib.contextmanager
    def _admin(self) -> Iterator[Any]:
        pg = self.pg
        conn = psycopg2.connect(
            host=pg["host"],
            port=pg["port"],
            user=pg["user"],
            password=pg["password"],
            dbname="postgres",
            connect_timeout=10,
            sslmode="prefer",
            application_name="neon-migrate-standin",
        )
        try:
            conn.autocommit = True
            with conn.cursor() as cur:
                yield cur
        finally:
            conn.close()

    def _databases(self) -> set[str]:
        with self._admin() as cur:
            cur.execute("SELECT datname FROM pg_database")
            return {row[0] for row in cur.fetchall()}

    def _drop(self, database: str) -> None:
        with self._admin() as cur:  # FORCE: a branch's sessions end with it, as on Neon
            cur.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(database))
            )

    def _copy_database(self, source: str, target: str) -> str:
        """Copy `source` into a new database `target`; returns how ("template"/"pg_dump")."""
        with self._admin() as cur:
            cur.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = %s"
                " AND backend_type = 'client backend' AND pid <> pg_backend_pid()",
                (source,),
            )
            how = "pg_dump" if cur.fetchone()[0] else "template"
            if how == "template":
                try:
                    cur.execute(
                        sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
                            sql.Identifier(target), sql.Identifier(source)
                        )
                    )
                except psycopg2.errors.ObjectInUse:  # a session arrived in between
                    how = "pg_dump"
            if how == "pg_dump":
                cur.execute(
                    "SELECT pg_encoding_to_char(encoding), datcollate, datctype"
                    " FROM pg_database WHERE datname = %s",
                    (source,),
                )
                encoding, collate, ctype = cur.fetchone()
                cur.execute(
                    sql.SQL(
                        "CREATE DATABASE {} TEMPLATE template0 ENCODING %s"
                        " LC_COLLATE %s LC_CTYPE %s"
                    ).format(sql.Identifier(target)),
                    (encoding, collate, ctype),
                )
            self._copy_settings(cur, source, target)
        if how == "pg_dump":
            self._dump_restore(source, target)
        return how

    @staticmethod
    def _copy_settings(cur: Any, source: str, target: str) -> None:
        """What neither TEMPLATE nor pg_dump (without --create) copies: the owner and
        `ALTER DATABASE … SET` / `ALTER ROLE … IN DATABASE … SET` settings."""
        cur.execute("SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = %s", (source,))
        owner = cur.fetchone()[0]
        cur.execute(
            sql.SQL("ALTER DATABASE {} OWNER TO {}").format(
                sql.Identifier(target), sql.Identifier(owner)
            )
        )
        cur.execute(
            "SELECT r.rolname, s.setconfig FROM pg_db_role_setting s"
            " LEFT JOIN pg_roles r ON r.oid = s.setrole"
            " WHERE s.setdatabase = (SELECT oid FROM pg_database WHERE datname = %s)",
            (source,),
        )
        for role, settings in cur.fetchall():
            for setting in settings or []:
                name, _, value = setting.partition("=")
                values = _split_list(value) if name in _LIST_SETTINGS else [value]
                literals = sql.SQL(", ").join(sql.Literal(v) for v in values)
                target_sql = sql.SQL("ALTER DATABASE {}").format(sql.Identifier(target))
                if role:
                    target_sql = sql.SQL("ALTER ROLE {} IN DATABASE {}").format(
                        sql.Identifier(role), sql.Identifier(target)
                    )
                cur.execute(
                    sql.SQL("{} SET {} TO {}").format(target_sql, sql.Identifier(name), literals)
                )

    def _dump_restore(self, source: str, target: str) -> None:
        pg = self.pg
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")} | {
            "PGHOST": pg["host"],
            "PGPORT": str(pg["port"]),
            "PGUSER": pg["user"],
            "PGPASSWORD": pg["password"],
            "PGSSLMODE": "prefer",
            "PGCONNECT_TIMEOUT": "10",
            "LC_ALL": "C",
            "PGAPPNAME": "neon-migrate-standin",
        }
        with tempfile.TemporaryFile() as dump_err, tempfile.TemporaryFile() as restore_err:
            dump = subprocess.Popen(
                [str(self.bin_dir / "pg_dump"), "--format=custom", "--dbname", source],
                stdout=subprocess.PIPE,
                stderr=dump_err,
                env=env,
            )
            restore = subprocess.Popen(
                [
                    str(self.bin_dir / "pg_restore"),
                    "--exit-on-error",
                    "--no-password",
                    "--dbname",
                    target,
                ],
                stdin=dump.stdout,
                stderr=restore_err,
                env=env,
            )
            dump.stdout.close()  # pg_restore alone reads it: pg_dump sees a closed pipe
            self.children |= {dump, restore}
            try:
                codes = restore.wait(timeout=600), dump.wait(timeout=600)
            except subprocess.TimeoutExpired:
                dump.kill()
                restore.kill()
                raise RuntimeError("pg_dump | pg_restore took over 600 s") from None
            finally:
                self.children -= {dump, restore}
            if any(codes):
                said = []
                for f in (dump_err, restore_err):
                    f.seek(0)
                    said += [ln for ln in f.read().decode(errors="replace").splitlines() if ln]
                raise RuntimeError(f"pg_dump | pg_restore failed: {said[-1] if said else codes}")


def _split_list(value: str) -> list[str]:
    """A stored list setting ('"$user", public') as its elements ('$user', 'public')."""
    items = re.findall(r'"(?:[^"]|"")*"|[^,\s]+', value)
    return [i[1:-1].replace('""', '"') if i.startswith('"') else i for i in items]


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "neon-migrate-standin"
    project: Project  # set on the subclass the server uses
    token: str

    def do_GET(self) -> None:
        self._serve("GET")

    def do_POST(self) -> None:
        self._serve("POST")

    def do_DELETE(self) -> None:
        self._serve("DELETE")

    def do_PATCH(self) -> None:
        self._serve("PATCH")

    def _serve(self, method: str) -> None:
        status, body = 500, {"code": "", "message": "internal error"}
        headers: dict[str, str] = {}
        try:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            given = self.headers.get("Authorization", "")
            if not hmac.compare_digest(given.encode(), f"Bearer {self.token}".encode()):
                raise ApiError(401, "authentication required: a valid API key")
            try:
                payload = json.loads(raw) if raw else None
            except ValueError:
                raise ApiError(400, "the request body is not JSON") from None
            target = urlsplit(self.path)
            status, body, *more = self.project.handle(
                method, target.path.rstrip("/"), parse_qs(target.query), payload
            )
            headers = more[0] if more else {}
        except ApiError as exc:
            status, body = (
                exc.status,
                {"code": exc.code, "message": exc.message, "request_id": str(uuid.uuid4())},
            )
        except Exception:
            log.error("%s %s failed:\n%s", method, self.path, traceback.format_exc())
        data = b"" if body is None else str(body).encode() if isinstance(body, str) else (
            json.dumps(body).encode())  # fmt: skip
        self.send_response(status)
        kind = "text/html" if isinstance(body, str) else "application/json"
        for name, value in ({"Content-Type": kind} if data else {}).items() | headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:  # the request line; no headers
        log.info("%s %s", self.address_string(), format % args)


def serve(folder: Path, daemon: bool = False) -> None:
    config = _load(folder / "standin.json")
    if config is None:
        raise SystemExit(f"no configuration in {folder / 'standin.json'}")
    if daemon:  # the parent returns at once; the server is adopted by init
        if os.fork() > 0:
            os._exit(0)
        os.setsid()
    logging.basicConfig(
        level=logging.INFO,
        stream=sys.stdout,
        force=True,
        format="%(asctime)s %(levelname)s %(message)s",
    )
    project = Project(folder, config)
    handler = type("BoundHandler", (Handler,), {"project": project, "token": config["token"]})
    port = config.get("port") or 0
    try:
        httpd = ThreadingHTTPServer((HOST, port), handler)
    except OSError:  # last time's port is taken now
        httpd = ThreadingHTTPServer((HOST, 0), handler)
    httpd.daemon_threads = True

    def stop(*_: Any) -> None:
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, stop)
    stopping = threading.Event()

    def reaper() -> None:
        while not stopping.wait(float(config.get("reap_interval_s") or 5.0)):
            try:
                project.reap()
            except Exception:
                log.error("reaping failed:\n%s", traceback.format_exc())

    threading.Thread(target=reaper, name="reaper", daemon=True).start()
    pg_port = config["pg"]["port"]
    _write_private(
        folder / "running.json",
        {
            "pid": os.getpid(),
            "port": httpd.server_port,
            "project_id": project.project_id,
            "server_port": pg_port,
        },
    )
    log.info(
        "Neon API stand-in for project %s on http://%s:%d%s (PostgreSQL port %d)",
        project.project_id,
        HOST,
        httpd.server_port,
        API_PREFIX,
        pg_port,
    )
    try:
        httpd.serve_forever(poll_interval=0.2)
    finally:
        stopping.set()
        for child in list(project.children):
            with contextlib.suppress(OSError):
                child.kill()
        httpd.server_close()
        log.info("stopped")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=f"python -m {MODULE}", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("serve", help="serve the API for the stand-in folder given")
    run.add_argument("folder", type=Path, help="<twin root>/neon-api, with standin.json")
    run.add_argument("--daemon", action="store_true", help="fork into the background")
    args = parser.parse_args(argv)
    serve(args.folder.absolute(), daemon=args.daemon)
    return 0


if __name__ == "__main__":
    sys.exit(main())
