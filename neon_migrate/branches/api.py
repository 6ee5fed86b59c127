"""A small client for the part of Neon's HTTP API that branch rehearsals use.

Endpoints, branches, operations and connection URIs of one project, over httpx (timeouts
on every request, pluggable transports for tests). Shapes follow Neon's API reference
(https://neon.com/docs/reference/api/): `POST /projects/{id}/branches` answers 201 with
`branch`, `endpoints[]`, `operations[]` (and `roles`, `databases`, optionally
`connection_uris`); an operation is `scheduling`, `running`, `finished`, `failed`,
`error`, `cancelling`, `cancelled` or `skipped`; errors are `{"code", "message"}`. Branch
lists come in pages (`limit`, `cursor`, `pagination.next`), with each branch's
`annotation_value` under `annotations`.

Retries, as the reference allows them, are retries.py's; how an answer becomes a value or
an error, answers.py's; waiting for operations, operations.py's. A branch creation that
may have happened is looked up by its name first, and repeated once only if Neon has no
such branch.

The API key is only ever in the `Authorization` header of the httpx client: never in a
message, a log line, an exception or a repr. Connection URIs carry a password: show them
only through `neon_migrate.connection.urls.mask`.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import httpx

from neon_migrate.branches.answers import (
    CreatedBranch,
    NeonApiError,
    field,
    refused,
    unreachable,
)
from neon_migrate.branches.credentials import (
    NEON_API_URL,
    checked_base_url,
    checked_key,
    checked_project,
)
from neon_migrate.branches.operations import adopt, wait_for_operations
from neon_migrate.branches.retries import NOT_SENT, send_with_retries
from neon_migrate.errors import ConfigError, UnreachableError

__all__ = ["NEON_API_URL", "CreatedBranch", "NeonApi", "NeonApiError", "rfc3339"]

LIMIT_CODE = "BRANCHES_LIMIT_EXCEEDED"  # 422 from POST /branches past the plan's limit
PAGE = 100  # branches asked for per page; pages are followed whatever the server's size


def rfc3339(moment: datetime) -> str:
    """`moment` as Neon wants `expires_at`: RFC 3339, seconds precision, UTC (`...Z`)."""
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError("expires_at needs a time zone (e.g. datetime.now(UTC) + ...)")
    return moment.astimezone(UTC).replace(microsecond=0).strftime("%Y-%m-%dT%H:%M:%SZ")


class NeonApi:
    """The Neon API of one project. Use as a context manager, or call `close()`."""

    def __init__(
        self,
        base_url: str,
        api_key: str | Any,  # or a SecretStr
        project_id: str,
        *,
        timeout: float = 30.0,
        retry_total_s: float = 60.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.base_url = checked_base_url(base_url)
        key, project_id = checked_key(api_key), checked_project(project_id)
        self.project_id = project_id
        self.retry_total_s = retry_total_s
        self.requests = 0  # every request sent, retries included: a rehearsal's API cost
        self._client = httpx.Client(
            base_url=self.base_url,
            headers={
                "Authorization": f"Bearer {key}",
                "Accept": "application/json",
                "User-Agent": "neon-migrate",
            },
            timeout=httpx.Timeout(timeout, connect=min(timeout, 10.0)),
            transport=transport,
            follow_redirects=False,  # a redirect must not carry the key to another host
        )

    def __repr__(self) -> str:
        return f"NeonApi(base_url={self.base_url!r}, project_id={self.project_id!r})"

    def __enter__(self) -> NeonApi:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def close(self) -> None:
        self._client.close()

    # --- reads ------------------------------------------------------------------------------
    def endpoints(self) -> list[dict[str, Any]]:
        """The project's compute endpoints (`id`, `host`, `branch_id`, `type`, ...)."""
        return self._get_list("endpoints")

    def branches(self, search: str | None = None) -> list[dict[str, Any]]:
        """The project's branches (`id`, `name`, `parent_id`, `default`, `expires_at`, ...),
        every page of them, each with its `annotation_value` ({} when it has none);
        `search` narrows them by (part of) a name or id, as Neon's list does."""
        found: list[dict[str, Any]] = []
        params: dict[str, Any] = {"limit": PAGE} | ({"search": search} if search else {})
        seen: set[str] = set()
        while True:
            body = self._request("GET", f"{self._project}/branches", params=params,
                                 project_level=True)  # fmt: skip
            page = [b for b in field(body, "branches", list, "branches") if isinstance(b, dict)]
            notes = body.get("annotations") or {}
            for branch in page:
                note = notes.get(branch.get("id")) if isinstance(notes, dict) else None
                value = note.get("value") if isinstance(note, dict) else None
                branch["annotation_value"] = value if isinstance(value, dict) else {}
            found += page
            cursor = (body.get("pagination") or {}).get("next")
            if not page or not cursor or cursor in seen:  # the last page (or a loop)
                return found
            seen.add(cursor)
            params = params | {"cursor": cursor}

    def branch(self, branch_id: str) -> dict[str, Any]:
        body = self._request("GET", f"{self._project}/branches/{quote(branch_id)}")
        return field(body, "branch", dict, f"branch {branch_id}")

    def branch_endpoints(self, branch_id: str) -> list[dict[str, Any]]:
        body = self._request("GET", f"{self._project}/branches/{quote(branch_id)}/endpoints")
        return [e for e in field(body, "endpoints", list, "endpoints") if isinstance(e, dict)]

    def compare_schema(self, branch_id: str, base_branch_id: str, database: str) -> str:
        """Neon's schema diff of `database` between `branch_id` and `base_branch_id`: a
        unified diff of their schema dumps, base first ("" when they are the same)."""
        params = {"base_branch_id": base_branch_id, "db_name": database}
        path = f"{self._project}/branches/{quote(branch_id)}/compare_schema"
        body = self._request("GET", path, params=params)
        diff = body.get("diff") if isinstance(body, dict) else None
        return diff if isinstance(diff, str) else ""

    def endpoint_for_host(self, host: str) -> tuple[str, str] | None:
        """(endpoint_id, branch_id) of the endpoint whose host `host` is, or None. A pooled
        host (`ep-…-pooler.…`) finds its endpoint too: Neon lists the direct host."""
        found = self.endpoint_of_host(host)
        return None if found is None else (str(found["id"]), str(found["branch_id"]))

    def endpoint_of_host(self, host: str) -> dict[str, Any] | None:
        """The endpoint (all its fields: compute size too) whose host `host` is, or None."""
        wanted = _endpoint_host(host)
        for endpoint in self.endpoints():
            if _endpoint_host(str(endpoint.get("host", ""))) == wanted:
                return endpoint
        return None

    def operation(self, operation_id: str, *, budget: float | None = None) -> dict[str, Any]:
        body = self._request(
            "GET", f"{self._project}/operations/{quote(operation_id)}", budget=budget
        )
        return field(body, "operation", dict, f"operation {operation_id}")

    def connection_uri(
        self, branch_id: str, endpoint_id: str, database: str, role: str, pooled: bool = False
    ) -> str:
        """A libpq URI (with the role's password: mask it before showing it)."""
        params = {
            "branch_id": branch_id,
            "endpoint_id": endpoint_id,
            "database_name": database,
            "role_name": role,
            "pooled": "true" if pooled else "false",
        }
        try:
            body = self._request("GET", f"{self._project}/connection_uri", params=params)
        except NeonApiError as err:
            if err.status != 412:
                raise
            raise ConfigError(  # the project's setting, not the branch: say which
                f"Neon does not store role passwords in project {self.project_id}, so it "
                f"cannot give a connection URI for role {role} on a new branch "
                f"({getattr(err, 'said', err.cause)})",
                "the branch rehearsal needs them: use a project that stores role passwords "
                "(Neon's default), or unset NEON_API_KEY to rehearse on production instead",
            ) from None
        return field(body, "uri", str, "connection_uri")

    # --- changes ----------------------------------------------------------------------------
    def create_branch(
        self,
        parent_id: str | None,
        name: str,
        expires_at: datetime | None = None,
        *,
        annotation: dict[str, str] | None = None,
        compute: dict[str, Any] | None = None,
    ) -> CreatedBranch:
        """Create a branch of `parent_id` (None: the default branch) with a read-write
        endpoint. Wait for `operation_ids` before connecting. `expires_at` (timezone-aware,
        within 30 days) lets Neon delete the branch if nobody else does; `annotation`
        marks it (`annotation_value`); `compute` sizes its endpoint
        (`autoscaling_limit_min_cu` / `_max_cu`; without them, the project's default).

        A creation whose answer was lost (5xx, 524, a dropped link) may have happened: the
        branch is looked up by its name, and only if Neon has none is the POST repeated,
        once. Past the plan's branch limit: NeonApiError with code BRANCHES_LIMIT_EXCEEDED."""
        branch: dict[str, Any] = {"name": name}
        if parent_id:
            branch["parent_id"] = parent_id
        if expires_at is not None:
            branch["expires_at"] = rfc3339(expires_at)
        body: dict[str, Any] = {
            "branch": branch,
            "endpoints": [{"type": "read_write"} | (compute or {})],
        }
        if annotation:
            body["annotation_value"] = annotation
        for attempt in (1, 2):
            try:
                answer = self._request("POST", f"{self._project}/branches", json=body,
                                       creating=name)  # fmt: skip
                break
            except NeonApiError as err:
                if err.status == 422 and err.code == LIMIT_CODE:
                    raise NeonApiError(
                        f"the Neon project {self.project_id} is at its plan's branch limit "
                        f"({getattr(err, 'said', err.cause)})",
                        "delete branches you no longer need in the Neon console (previews "
                        "and snapshots count too), or raise the limit with the plan",
                        status=422,
                        code=LIMIT_CODE,
                    ) from None
                raise
            except UnreachableError as err:
                if not getattr(err, "maybe_done", False):
                    raise
                made = [b for b in self.branches(search=name) if b.get("name") == name]
                if made:  # it was created: use it, never make a second one
                    return adopt(self, made[0])
                if attempt == 2:
                    raise
        made = field(answer, "branch", dict, "the created branch")
        endpoints = field(answer, "endpoints", list, "the created branch's endpoints")
        writable = [e for e in endpoints if isinstance(e, dict) and e.get("type") == "read_write"]
        if not writable:
            raise NeonApiError(
                f"Neon created branch {made.get('id')} without a read-write endpoint",
                "delete the branch in the Neon console",
            )
        operations = answer.get("operations") or []
        return CreatedBranch(
            branch_id=str(made["id"]),
            name=str(made.get("name", name)),
            parent_id=made.get("parent_id"),
            endpoint_id=str(writable[0]["id"]),
            host=str(writable[0].get("host", "")),
            operation_ids=tuple(str(op["id"]) for op in operations if isinstance(op, dict)),
            expires_at=made.get("expires_at"),
        )

    def wait_for_operations(
        self, operation_ids: Iterable[str], deadline_s: float, *, failed_grace_s: float = 30.0
    ) -> None:
        """Poll until every operation is finished (or skipped), at most `deadline_s` seconds.

        A cancelled operation is an error at once. A `failed` one is not final on Neon (the
        control plane retries it), so it is an error only when it stays failed for
        `failed_grace_s`. Errors name the operation and its action.
        """
        wait_for_operations(self, operation_ids, deadline_s, failed_grace_s)

    def delete_branch(self, branch_id: str, *, wait_s: float | None = 60.0) -> bool:
        """Delete a branch; True if it was deleted, False if it was already gone (204 with
        no body, as Neon answers a DELETE of a deleted branch, e.g. a repeated one whose
        first answer was lost; or 404). Deletion is soft on Neon: the branch stops counting,
        and is recoverable for a while. With `wait_s`, also wait that long for the
        deletion's operations: a failure of the deletion is then an error, not a branch
        silently left behind."""
        answer = self._request(
            "DELETE", f"{self._project}/branches/{quote(branch_id)}", missing_ok=True
        )
        if answer is None:
            return False
        if wait_s:
            ops = [str(op["id"]) for op in answer.get("operations") or [] if isinstance(op, dict)]
            self.wait_for_operations(ops, wait_s)
        return True

    # --- the one place requests are made --------------------------------------------------
    @property
    def _project(self) -> str:
        return f"/projects/{quote(self.project_id, safe='')}"

    def _get_list(self, name: str) -> list[dict[str, Any]]:
        body = self._request("GET", f"{self._project}/{name}", project_level=True)
        return [item for item in field(body, name, list, name) if isinstance(item, dict)]

    def _request(
        self,
        method: str,
        path: str,
        *,
        json: dict | None = None,
        params: dict | None = None,
        budget: float | None = None,
        missing_ok: bool = False,
        project_level: bool = False,
        creating: str | None = None,
    ) -> Any:
        what = f"{method} {path}"
        started = time.monotonic()
        deadline = started + (self.retry_total_s if budget is None else budget)

        def send() -> httpx.Response:
            self.requests += 1
            return self._client.request(method, path, json=json, params=params)

        try:
            response = send_with_retries(send, method, what, deadline)
        except httpx.TransportError as exc:
            sent = not isinstance(exc, NOT_SENT)
            waited = time.monotonic() - started
            error = unreachable(self.base_url, what, exc, sent, creating, waited, self._scrub)
            error.maybe_done = sent and method == "POST"
            raise error from None
        status = response.status_code
        if status == 204:  # No Content: e.g. a DELETE of a branch already deleted
            return None
        if status < 400:
            try:
                return response.json()
            except ValueError:
                raise NeonApiError(
                    f"the Neon API answered {what} with something that is not JSON (HTTP {status})",
                    status=status,
                ) from None
        if status == 404 and missing_ok:
            return None
        error = refused(response, what, time.monotonic() - started, project_id=self.project_id,
                        project_level=project_level, budget=self.retry_total_s,
                        scrub=self._scrub)  # fmt: skip
        error.maybe_done = method == "POST" and status >= 500 and status != 503
        raise error

    def _scrub(self, text: str) -> str:
        """`text` (a server's message) without the key, should a server ever echo it."""
        key = self._client.headers.get("Authorization", "").removeprefix("Bearer ")
        return text.replace(key, "***") if key else text


def _endpoint_host(host: str) -> str:
    """A host as the endpoint list shows it: lower case, no trailing dot, no `-pooler`."""
    host = host.strip().lower().rstrip(".")
    label, dot, rest = host.partition(".")
    return label.removesuffix("-pooler") + dot + rest
