"""The stand-in's imitation of Neon's API where real projects differ from the happy path.

Kept apart from the model (model.py: branches as real copies, the happy path) so each
stays readable. Each behaviour is Neon's, checked against its API
reference, and each has a switch in the stand-in's test hook (`POST /_standin/faults`):

- the plan's branch limit: past `branch_limit` branches (the default branch included, as
  on Neon), a POST answers 422 `BRANCHES_LIMIT_EXCEEDED`;
- `annotation_value` on a created branch, listed under `annotations` by the branch list;
- branch lists in pages: `limit`, `cursor`, `pagination.next` (`page_size` is the
  server's own page when the client asks for more), and `search` by name or id;
- a DELETE of a branch that is not there answers 204 with no body; `delete_then_fail`:
  the next n DELETEs delete, then answer 500 (the answer lost, as a retry would see it);
- `error_operation`: the next branch's create operation ends in status `error`;
- `lost_create` (`{"count": n, "status": 524}`): the next n POSTs create the branch, then
  answer that status with Cloudflare's HTML, not JSON;
- `rate_limited` (`{"count": n, "retry_after": s}`): the next n requests answer 429 with
  that `Retry-After`;
- `passwords_not_stored`: `connection_uri` answers 412, as for a project that does not
  store role passwords;
- `backdate` (`{"id", "seconds"}`): a branch looks created that long ago (a killed
  check's);
- compute sizes: an endpoint keeps the `autoscaling_limit_min_cu` / `_max_cu` it was
  created with (else `default_compute`); `parent_compute` sizes the default branch's;
- `GET /branches/{id}/compare_schema?base_branch_id&db_name`: a unified diff of the two
  databases' schema dumps (pg_dump --schema-only), base first.

`requests` counts the API requests served (the hook itself excluded), and `last_create`
keeps the last POST's body, so tests can count a rehearsal's calls and see what it asked.
"""

from __future__ import annotations

import difflib
import os
import subprocess
from datetime import UTC, datetime, timedelta
from typing import Any

LIMIT_MESSAGE = "branches limit exceeded"
CLOUDFLARE_524 = "<html><body><h1>524</h1>A timeout occurred (Cloudflare)</body></html>"


class NeonBehaviours:
    """State and answers for one project (`project` is standin.Project)."""

    def __init__(self, project: Any, error: type[Exception]) -> None:
        self.project = project
        self.error = error  # standin.ApiError (of the module as it runs: maybe __main__)
        self.settings: dict[str, Any] = {
            "branch_limit": None,  # None: no limit (Neon's Free plan: 10)
            "page_size": None,  # the server's largest page; None: everything at once
            "default_compute": [0.25, 0.25],
            "passwords_not_stored": False,
        }
        self.counts = {"delete_then_fail": 0, "error_operation": 0, "lost_create": 0,
                       "rate_limited": 0}  # fmt: skip
        self.lost_status = 524
        self.retry_after = 1.0
        self.requests = 0
        self.last_create: dict | None = None
        self.error_ops: set[str] = set()

    # --- the test hook
    def configure(self, body: dict) -> None:
        for key in ("branch_limit", "page_size", "default_compute", "passwords_not_stored"):
            if key in body:
                self.settings[key] = body[key]
        if "parent_compute" in body:
            default = self.project.branches[self.project.default_id]
            default["compute"] = list(body["parent_compute"])
            self.project._save()
        for key in ("delete_then_fail", "error_operation"):
            if key in body:
                self.counts[key] = int(body[key])
        if "lost_create" in body:
            self.counts["lost_create"] = int(body["lost_create"].get("count", 1))
            self.lost_status = int(body["lost_create"].get("status", 524))
        if "backdate" in body:  # {"id", "seconds"}: a branch made that long ago
            branch = self.project._branch(body["backdate"]["id"])
            then = datetime.now(UTC) - timedelta(seconds=body["backdate"]["seconds"])
            branch["created_at"] = then.strftime("%Y-%m-%dT%H:%M:%SZ")
            self.project._save()
        if "rate_limited" in body:
            self.counts["rate_limited"] = int(body["rate_limited"].get("count", 1))
            self.retry_after = float(body["rate_limited"].get("retry_after", 1))

    def state(self) -> dict:
        return {**self.settings, **self.counts, "requests": self.requests,
                "last_create": self.last_create}  # fmt: skip

    # --- before the stand-in's own routes; an answer here is final
    def before(self, method: str, route: list[str], query: dict, body: Any) -> tuple | None:
        ApiError = self.error
        self.requests += 1
        if self.counts["rate_limited"] > 0:
            self.counts["rate_limited"] -= 1
            message = {"code": "", "message": "rate limit exceeded"}
            return 429, message, {"Retry-After": f"{self.retry_after:g}"}
        branches = self.project.branches
        if route == ["branches"] and method == "GET":
            return 200, self.branch_list(query)
        if route == ["branches"] and method == "POST":
            self.last_create = body if isinstance(body, dict) else None
            limit = self.settings["branch_limit"]
            live = [b for b in branches.values() if b["state"] != "deleting"]
            if limit is not None and len(live) >= int(limit):
                raise ApiError(422, f"{LIMIT_MESSAGE}: the plan allows {limit}",
                               "BRANCHES_LIMIT_EXCEEDED")  # fmt: skip
            return None
        if len(route) == 2 and route[0] == "branches" and method == "DELETE":
            if route[1] not in branches:
                return 204, None  # Neon: the branch does not exist or is already deleted
            if self.counts["delete_then_fail"] > 0:
                self.counts["delete_then_fail"] -= 1
                self.project.delete_branch(route[1])
                raise ApiError(500, "internal error (stand-in: deleted, answer lost)")
            return None
        if len(route) == 3 and route[0] == "branches" and route[2] == "endpoints":
            branch = self.project._branch(route[1])
            found = [self.project.endpoint_json(branch)] if branch.get("endpoint_id") else []
            return 200, {"endpoints": found}
        if len(route) == 3 and route[0] == "branches" and route[2] == "compare_schema":
            return 200, {"diff": self.compare_schema(route[1], query)}
        if len(route) == 2 and route[0] == "operations" and route[1] in self.error_ops:
            op = self.project.operations.get(route[1])
            if op is not None and op["status"] == "failed":  # ended: in error, for good
                return 200, {"operation": self.project.public(op) | {"status": "error"}}
            return None
        if route == ["connection_uri"] and self.settings["passwords_not_stored"]:
            raise ApiError(412, "the project does not store role passwords: "
                           "connection URIs cannot be built")  # fmt: skip
        return None

    # --- after the stand-in created a branch (answer: its 201 body)
    def created(self, branch: dict, body: dict, answer: dict, ops: list[dict]) -> tuple:
        annotation = body.get("annotation_value")
        if isinstance(annotation, dict):
            branch["annotation"] = {str(k): str(v) for k, v in annotation.items()}
        asked = (body.get("endpoints") or [{}])[0]
        if isinstance(asked, dict) and "autoscaling_limit_min_cu" in asked:
            branch["compute"] = [asked["autoscaling_limit_min_cu"],
                                 asked.get("autoscaling_limit_max_cu",
                                           asked["autoscaling_limit_min_cu"])]  # fmt: skip
        if answer.get("endpoints"):
            answer["endpoints"] = [self.project.endpoint_json(branch)]
        self.project._save()
        if self.counts["lost_create"] > 0:
            self.counts["lost_create"] -= 1
            return self.lost_status, CLOUDFLARE_524
        return 201, answer

    def take_error_operation(self) -> bool:
        """Whether the branch being created now gets an operation ending in `error`."""
        if self.counts["error_operation"] > 0:
            self.counts["error_operation"] -= 1
            return True
        return False

    def compute(self, branch: dict) -> list:
        return branch.get("compute") or self.settings["default_compute"]

    def annotations(self, listed: list[dict]) -> dict:
        return {
            b["id"]: {
                "object": {"type": "console/branch", "id": b["id"]},
                "value": b["annotation"],
                "created_at": b["created_at"],
                "updated_at": b["created_at"],
            }
            for b in listed
            if b.get("annotation")
        }

    def branch_list(self, query: dict) -> dict:
        def one(name: str) -> str | None:
            values = query.get(name)
            return values[-1] if values else None

        listed = sorted(self.project._listed(), key=lambda b: (b["created_at"], b["id"]))
        wanted = one("search")
        if wanted:
            listed = [b for b in listed if wanted in b["name"] or wanted in b["id"]]
        start = int(one("cursor") or 0)
        size = int(one("limit") or 10000)
        if self.settings["page_size"]:
            size = min(size, int(self.settings["page_size"]))
        page = listed[start : start + size]
        answer: dict[str, Any] = {
            "branches": [self.project.branch_json(b) for b in page],
            "annotations": self.annotations(page),
        }
        if start + size < len(listed):
            answer["pagination"] = {"next": str(start + size), "sort_by": "created_at",
                                    "sort_order": "asc"}  # fmt: skip
        return answer

    def compare_schema(self, branch_id: str, query: dict) -> str:
        ApiError = self.error
        project = self.project
        branch = project._branch(branch_id)
        base = project._branch((query.get("base_branch_id") or [None])[-1]
                               or branch.get("parent_id") or project.default_id)  # fmt: skip
        if (query.get("db_name") or [None])[-1] != project.branches[project.default_id]["database"]:
            raise ApiError(404, "database not found")
        old, new = self._schema(base["database"]), self._schema(branch["database"])
        name = (query.get("db_name") or [""])[-1]
        return "".join(difflib.unified_diff(old, new, f"a/{name}", f"b/{name}"))

    def _schema(self, database: str) -> list[str]:
        pg = self.project.pg
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")} | {
            "PGHOST": pg["host"], "PGPORT": str(pg["port"]), "PGUSER": pg["user"],
            "PGPASSWORD": pg["password"], "PGSSLMODE": "prefer", "PGCONNECT_TIMEOUT": "10",
        }  # fmt: skip
        dump = subprocess.run(
            [str(self.project.bin_dir / "pg_dump"), "--schema-only", "--no-owner",
             "--no-privileges", "--dbname", database],
            capture_output=True, text=True, env=env, timeout=120, check=True,
        )  # fmt: skip
        return [
            line + "\n"
            for line in dump.stdout.splitlines()
            if not line.startswith(("\\restrict", "\\unrestrict", "-- Dumped"))
        ]
