"""A small client for the part of Neon's HTTP API that branch rehearsals use.

Endpoints, branches, operations and connection URIs of one project, over httpx (timeouts
on every request, pluggable transports for tests). Shapes follow Neon's API reference
(https://neon.com/docs/reference/api/): `POST /projects/{id}/branches` answers 201 with
`branch`, `endpoints[]`, `operations[]` (and `roles`, `databases`, optionally
`connection_uris`); an operation is `scheduling`, `running`, `finished`, `failed`,
`error`, `cancelling`, `cancelled` or `skipped`; errors are `{"code", "message"}`. Branch
lists come in pages (`limit`, `cursor`, `pagination.next`), with each branch's
`annotation_value` under `annotations`.

Retries, as the reference allows them: `423 Locked` (another operation runs in the
project) and `503` are always safe to retry; `429` was refused before any work (its
`Retry-After` is waited for). Other 5xx (and Cloudflare's 524) and network failures
after the request was sent may have been processed, so they are retried for GET and
DELETE (a repeated DELETE answers 204, or 404: already gone) but never blindly for POST:
a branch creation that may have happened is looked up by its name first, and repeated
once only if Neon has no such branch. Every wait is jittered and bounded in total.

The API key is only ever in the `Authorization` header of the httpx client: never in a
message, a log line, an exception or a repr. Connection URIs carry a password: show them
only through `neon_migrate.connection.urls.mask`.
"""

from __future__ import annotations

import logging
import random
import re
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote, urlsplit

import httpx

from neon_migrate.connection.urls import is_local_host
from neon_migrate.errors import ConfigError, HarnessError, MigrationError, UnreachableError

log = logging.getLogger(__name__)

NEON_API_URL = "https://console.neon.tech/api/v2"
KEY_VARIABLE, PROJECT_VARIABLE = "NEON_API_KEY", "NEON_PROJECT_ID"

# Operation statuses (Neon's reference): terminal ones are finished, skipped, cancelled and
# error; `failed` is not terminal, the control plane may retry the operation itself.
DONE = frozenset({"finished", "skipped"})
CANCELLED = frozenset({"cancelling", "cancelled"})
FAILED = "failed"
ERROR = "error"
LIMIT_CODE = "BRANCHES_LIMIT_EXCEEDED"  # 422 from POST /branches past the plan's limit
PAGE = 100  # branches asked for per page; pages are followed whatever the server's size

RETRY_ANY_METHOD = frozenset({423, 429, 503})  # safe whatever the method (see the docstring)
RETRY_UNLESS_POST = frozenset({500, 502, 504, 524})  # may have been processed: not for POST
MAX_EXPIRY = timedelta(days=30)  # Neon: expires_at at most 30 days ahead, in the future
_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)
_KEY_CHARS = re.compile(r"[\x21-\x7e]+")  # printable ASCII, no spaces: fits in a header


class NeonApiError(MigrationError):
    """The Neon API refused or failed a request (after retries where they are safe)."""

    def __init__(
        self, cause: str, fix: str = "", *, status: int | None = None, code: str | None = None
    ) -> None:
        super().__init__(cause, fix)
        self.status = status  # HTTP status, when the API answered
        self.code = code  # Neon's machine-readable error code, when it gave one


@dataclass(frozen=True)
class CreatedBranch:
    """What `create_branch` returns: the branch, its read-write endpoint, the operations
    to wait for before connecting (`wait_for_operations(operation_ids, ...)`)."""

    branch_id: str
    name: str
    parent_id: str | None
    endpoint_id: str
    host: str
    operation_ids: tuple[str, ...]
    expires_at: str | None


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
        self.base_url = _checked_base_url(base_url)
        if hasattr(api_key, "get_secret_value"):  # pydantic's SecretStr, as settings keep it
            api_key = api_key.get_secret_value()
        key = (api_key or "").strip()
        if not key:
            raise ConfigError(
                f"{KEY_VARIABLE} is not set",
                "create an API key in the Neon "
                f"console (Account settings → API keys) and set {KEY_VARIABLE}",
            )
        if not _KEY_CHARS.fullmatch(key):  # never echo it, not even in part
            raise ConfigError(
                f"{KEY_VARIABLE} has characters an API key cannot have",
                f"paste the key again into {KEY_VARIABLE}",
            )
        project_id = (project_id or "").strip()
        if not project_id or "/" in project_id:
            raise ConfigError(
                f"{PROJECT_VARIABLE} is not set"
                if not project_id
                else f"{PROJECT_VARIABLE}={project_id!r} is not a project ID",
                f"set {PROJECT_VARIABLE} to the ID in the Neon console's "
                "project settings (e.g. aged-wildflower-123456)",
            )
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
            page = [b for b in _field(body, "branches", list, "branches") if isinstance(b, dict)]
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
        return _field(body, "branch", dict, f"branch {branch_id}")

    def branch_endpoints(self, branch_id: str) -> list[dict[str, Any]]:
        body = self._request("GET", f"{self._project}/branches/{quote(branch_id)}/endpoints")
        return [e for e in _field(body, "endpoints", list, "endpoints") if isinstance(e, dict)]

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
        return _field(body, "operation", dict, f"operation {operation_id}")

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
        return _field(body, "uri", str, "connection_uri")

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
                    return self._adopt(made[0])
                if attempt == 2:
                    raise
        made = _field(answer, "branch", dict, "the created branch")
        endpoints = _field(answer, "endpoints", list, "the created branch's endpoints")
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

    def _adopt(self, made: dict[str, Any]) -> CreatedBranch:
        """A branch whose creation's answer was lost, found by name: its read-write endpoint
        from the API, and its readiness waited for (no operation ids came back)."""
        branch_id = str(made["id"])
        end = time.monotonic() + 300
        while True:
            state = self.branch(branch_id).get("current_state")
            writable = [e for e in self.branch_endpoints(branch_id)
                        if e.get("type") == "read_write"]  # fmt: skip
            if state == "ready" and writable:
                break
            if time.monotonic() > end:
                raise NeonApiError(
                    f"branch {made.get('name')} ({branch_id}) was created but is not ready "
                    "after 300 s",
                    f"delete branch {branch_id} in the Neon console; retry later",
                )
            time.sleep(0.5)
        return CreatedBranch(
            branch_id=branch_id,
            name=str(made.get("name")),
            parent_id=made.get("parent_id"),
            endpoint_id=str(writable[0]["id"]),
            host=str(writable[0].get("host", "")),
            operation_ids=(),
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
        pending = list(dict.fromkeys(operation_ids))
        end = time.monotonic() + deadline_s
        failed_since: dict[str, float] = {}
        interval = 0.1
        while pending:
            waiting: list[dict[str, Any]] = []
            for op_id in pending:
                remaining = max(end - time.monotonic(), 1.0)
                op = self.operation(op_id, budget=min(self.retry_total_s, remaining))
                status = op.get("status")
                if status in DONE:
                    continue
                if status in CANCELLED:
                    raise _operation_error(op, "was cancelled")
                if status == ERROR:  # terminal: Neon does not retry it
                    raise _operation_error(op, "ended in error")
                if status == FAILED:
                    first = failed_since.setdefault(op_id, time.monotonic())
                    if time.monotonic() - first >= failed_grace_s:
                        raise _operation_error(op, "failed")
                else:
                    failed_since.pop(op_id, None)  # retried by Neon: running again
                waiting.append(op)
            pending = [str(op.get("id")) for op in waiting]
            if not pending:
                return
            remaining = end - time.monotonic()
            if remaining <= 0:
                shown = ", ".join(
                    f"{op.get('id')} ({op.get('action')}: {op.get('status')})" for op in waiting
                )
                raise NeonApiError(
                    f"Neon operations did not finish within {deadline_s:g} s: {shown}",
                    "retry later, or allow more time; see the project's Operations page "
                    "in the Neon console",
                )
            time.sleep(min(interval * random.uniform(0.8, 1.2), remaining))
            interval = min(interval * 1.6, 2.0)

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
        return [item for item in _field(body, name, list, name) if isinstance(item, dict)]

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
        attempt = 0
        while True:
            attempt += 1
            self.requests += 1
            try:
                response = self._client.request(method, path, json=json, params=params)
            except httpx.TransportError as exc:
                sent = not isinstance(exc, _NOT_SENT)
                if (not sent or method != "POST") and _pause(deadline, attempt, None, what, exc):
                    continue
                error = self._unreachable(what, exc, sent, creating, time.monotonic() - started)
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
                        f"the Neon API answered {what} with something that is "
                        f"not JSON (HTTP {status})",
                        status=status,
                    ) from None
            if status == 404 and missing_ok:
                return None
            retry = status in RETRY_ANY_METHOD or (status in RETRY_UNLESS_POST and method != "POST")
            if retry and _pause(deadline, attempt, _retry_after(response), what, status):
                continue
            error = self._refused(what, response, time.monotonic() - started, project_level)
            error.maybe_done = method == "POST" and status >= 500 and status != 503
            raise error

    def _refused(
        self, what: str, response: httpx.Response, waited: float, project_level: bool
    ) -> HarnessError:
        status = response.status_code
        code, message = _error_body(response)
        message = self._scrub(message)
        said = f"HTTP {status}" + (f": {message}" if message else "")
        if status in (401, 403):
            if status == 401:
                return ConfigError(
                    f"the Neon API refused the key ({said})", f"check {KEY_VARIABLE}"
                )
            return ConfigError(
                f"the Neon API refused the key for project {self.project_id} ({said})",
                f"check {KEY_VARIABLE} and {PROJECT_VARIABLE}: the key must have access to "
                "the project",
            )
        if status == 404 and (project_level or "project" in message.lower()):
            return ConfigError(
                f"the Neon API knows no project {self.project_id!r} ({said})",
                f"check {PROJECT_VARIABLE} (the project ID in the Neon console's project "
                f"settings) and that {KEY_VARIABLE} belongs to its organization",
            )
        if status == 423:
            return NeonApiError(
                f"the Neon project {self.project_id} stayed locked by another operation for "
                f"{waited:.0f} s ({what}: {said})",
                "retry when the running operation has finished; see the project's "
                "Operations page in the Neon console",
                status=status,
                code=code,
            )
        if status == 429:
            after = _retry_after(response)
            return UnreachableError(
                f"the Neon API rate-limited {what} ({said})"
                + (f" and asked to wait {after:g} s more" if after else "")
                + f", after {waited:.0f} s of retries (the budget is {self.retry_total_s:g} s)",
                "retry later: Neon allows about 700 requests a minute per account; other "
                "jobs may be using the same API key",
            )
        if status >= 500:
            return UnreachableError(
                f"the Neon API answered {what} with {said}"
                + (f" for {waited:.0f} s" if waited >= 1 else ""),
                "retry later; Neon's status: https://neonstatus.com",
            )
        refused = NeonApiError(f"the Neon API refused {what} ({said})", status=status, code=code)
        refused.said = said  # what Neon said, for a caller that words the cause itself
        return refused

    def _unreachable(
        self, what: str, exc: Exception, sent: bool, creating: str | None, waited: float
    ) -> UnreachableError:
        host = urlsplit(self.base_url).netloc
        detail = self._scrub(str(exc)) or type(exc).__name__
        cause = f"the Neon API at {host} did not answer {what}: {detail}"
        if waited >= 1:
            cause += f" (tried for {waited:.0f} s)"
        fix = "check the network and the API URL; Neon's status: https://neonstatus.com"
        if sent and creating:
            fix = (
                f"the branch may have been created anyway: look for branch {creating!r} in "
                "the Neon console and delete it; then retry"
            )
        return UnreachableError(cause, fix)

    def _scrub(self, text: str) -> str:
        """`text` (a server's message) without the key, should a server ever echo it."""
        key = self._client.headers.get("Authorization", "").removeprefix("Bearer ")
        return text.replace(key, "***") if key else text


def _pause(
    deadline: float, attempt: int, retry_after: float | None, what: str, why: object
) -> bool:
    """Sleep before retry `attempt` (jittered exponential backoff, at least `retry_after`);
    False when the total budget is spent."""
    remaining = deadline - time.monotonic()
    if remaining <= 0.05 or (retry_after or 0.0) > remaining:  # never ask again too early
        return False
    step = min(8.0, 0.25 * 2 ** (attempt - 1))
    delay = max(random.uniform(step / 2, step), retry_after or 0.0)
    delay = min(delay, remaining)
    reason = why if isinstance(why, int) else type(why).__name__
    log.info("Neon API: %s answered %s; retrying in %.1f s", what, reason, delay)
    time.sleep(delay)
    return True


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("Retry-After", "")
    try:
        return max(0.0, min(float(value), 60.0))
    except ValueError:
        return None


def _error_body(response: httpx.Response) -> tuple[str | None, str]:
    try:
        body = response.json()
    except ValueError:
        return None, " ".join(response.text.split())[:200]
    if not isinstance(body, dict):
        return None, ""
    code = body.get("code")
    return (str(code) if code else None), " ".join(str(body.get("message") or "").split())[:300]


def _field(body: Any, name: str, kind: type, what: str) -> Any:
    value = body.get(name) if isinstance(body, dict) else None
    if not isinstance(value, kind):
        raise NeonApiError(
            f"the Neon API's answer for {what} has no {name!r}",
            "the API may have changed: report this",
        )
    return value


def _operation_error(op: dict[str, Any], how: str) -> NeonApiError:
    cause = f"Neon operation {op.get('id')} ({op.get('action')}) {how}"
    if op.get("error"):
        cause += f": {' '.join(str(op['error']).split())}"
    if op.get("failures_count"):
        cause += f" (after {op['failures_count']} attempts)"
    return NeonApiError(
        cause,
        "see the project's Operations page in the Neon console; retry later",
        status=None,
        code=str(op.get("status")),
    )


def _endpoint_host(host: str) -> str:
    """A host as the endpoint list shows it: lower case, no trailing dot, no `-pooler`."""
    host = host.strip().lower().rstrip(".")
    label, dot, rest = host.partition(".")
    return label.removesuffix("-pooler") + dot + rest


def _checked_base_url(base_url: str) -> str:
    url = (base_url or NEON_API_URL).strip().rstrip("/")
    try:
        parts = urlsplit(url)
        hostname = parts.hostname
    except ValueError:  # e.g. a bad port or IPv6 literal
        parts, hostname = None, None
    if parts is None or "@" in url or parts.query or parts.fragment:  # never echoed: a secret?
        raise ConfigError(
            "the Neon API URL is malformed or carries credentials or a query",
            f"leave it unset for {NEON_API_URL}",
        )
    if parts.scheme not in ("http", "https") or not hostname:
        raise ConfigError(
            f"the Neon API URL {url!r} is not an http(s) URL", f"leave it unset for {NEON_API_URL}"
        )
    if parts.scheme == "http" and not is_local_host(hostname):
        raise ConfigError(  # the key would cross the network in clear text
            f"the Neon API URL {url!r} is plain http to a remote host",
            "use https (the default is " + NEON_API_URL + ")",
        )
    return url
