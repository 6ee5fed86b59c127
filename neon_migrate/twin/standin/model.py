"""The stand-in's one project: its branches, endpoints and operations.

The state a Neon project keeps, as the harness sees it through the API: branches (the
default one is the twin's database), each with at most one endpoint, and the operations
that run while a branch is copied or deleted (`423 Locked` while one runs, as on Neon).
Branches survive restarts in `registry.json`, so a copy's database is never orphaned.
The copies themselves are copies.py's; the JSON answers shapes.py's; the routes routes.py's.
"""

from __future__ import annotations

import contextlib
import logging
import re
import secrets
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

from neon_migrate.twin.daemon import read_state, write_state
from neon_migrate.twin.standin import shapes
from neon_migrate.twin.standin.copies import Databases
from neon_migrate.twin.standin.neon import NeonBehaviours

MAX_EXPIRY = timedelta(days=30)  # as on Neon
ACTIVE = frozenset({"scheduling", "running"})  # operations that lock the project (423)
LOCKED_MESSAGE = (
    "project already has running conflicting operations, scheduling of new ones is prohibited"
)
_RFC3339 = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})")

log = logging.getLogger("neon_migrate.standin")


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
        self.db = Databases(self.pg, self.bin_dir)  # the copies, on the twin's PostgreSQL
        self.lock = threading.RLock()
        self.operations: dict[str, dict] = {}
        self.faults = {"locked": 0, "fail_operation": False, "fail_delete": 0,
                       "fail_delete_status": 500}  # fmt: skip
        self.served = {"locked": 0, "fail_operation": 0, "fail_delete": 0}
        self._load_registry()
        self.neon = NeonBehaviours(self, ApiError)  # limits, pages, faults past the happy path

    # --- registry: survives restarts, so branches (databases) are never orphaned
    def _load_registry(self) -> None:
        data = read_state(self.registry_file) or {}
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
        existing = self.db.names()
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
                self.db.drop(branch["database"])
        self._save()

    def _save(self) -> None:
        others = [b for b in self.branches.values() if not b.get("default")]
        default = {
            k: v
            for k, v in self.branches[self.default_id].items()
            if k in ("id", "endpoint_id", "created_at")
        }
        write_state(
            self.registry_file,
            {"project_id": self.project_id, "default": default, "branches": others},
        )

    # --- shapes as in Neon's API reference (shapes.py)
    def branch_json(self, b: dict) -> dict:
        return shapes.branch_json(self.project_id, b)

    def endpoint_json(self, b: dict) -> dict:
        return shapes.endpoint_json(self.project_id, b, self.neon.compute(b))

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
        answer = shapes.created(self, branch, ops, endpoint=bool(types))
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
            status = self.faults["fail_delete_status"]
            raise ApiError(status, "refused (stand-in fault hook: fail_delete)")
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
        return self.database_uri(branch["database"], pooled=one("pooled") == "true")

    def database_uri(self, database: str, pooled: bool) -> str:
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
                if "fail_delete_status" in body:  # 500 (asked again) or a 4xx (final)
                    self.faults["fail_delete_status"] = int(body["fail_delete_status"])
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
            how = self.db.copy(parent["database"], branch["database"])
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
                self.db.drop(branch["database"])
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
            self.db.drop(branch["database"])
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
