"""How the Neon API's answers become values, or one-line errors with a fix.

Neon's errors are `{"code", "message"}` bodies; a key refused, a project unknown, a
project locked, a rate limit, an outage and an answer missing a field each get their own
cause and fix here. A server's message is shown only with the API key scrubbed from it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpx

from neon_migrate.branches.retries import retry_after
from neon_migrate.errors import ConfigError, HarnessError, MigrationError, UnreachableError

KEY_VARIABLE, PROJECT_VARIABLE = "NEON_API_KEY", "NEON_PROJECT_ID"


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


def refused(
    response: httpx.Response,
    what: str,
    waited: float,
    *,
    project_id: str,
    project_level: bool,
    budget: float,
    scrub: Callable[[str], str],
) -> HarnessError:
    """The error for an answer of 400 or more, after the retries it was worth."""
    status = response.status_code
    code, message = error_body(response)
    message = scrub(message)
    said = f"HTTP {status}" + (f": {message}" if message else "")
    if status in (401, 403):
        if status == 401:
            return ConfigError(f"the Neon API refused the key ({said})", f"check {KEY_VARIABLE}")
        return ConfigError(
            f"the Neon API refused the key for project {project_id} ({said})",
            f"check {KEY_VARIABLE} and {PROJECT_VARIABLE}: the key must have access to the project",
        )
    if status == 404 and (project_level or "project" in message.lower()):
        return ConfigError(
            f"the Neon API knows no project {project_id!r} ({said})",
            f"check {PROJECT_VARIABLE} (the project ID in the Neon console's project "
            f"settings) and that {KEY_VARIABLE} belongs to its organization",
        )
    if status == 423:
        return NeonApiError(
            f"the Neon project {project_id} stayed locked by another operation for "
            f"{waited:.0f} s ({what}: {said})",
            "retry when the running operation has finished; see the project's "
            "Operations page in the Neon console",
            status=status,
            code=code,
        )
    if status == 429:
        after = retry_after(response)
        return UnreachableError(
            f"the Neon API rate-limited {what} ({said})"
            + (f" and asked to wait {after:g} s more" if after else "")
            + f", after {waited:.0f} s of retries (the budget is {budget:g} s)",
            "retry later: Neon allows about 700 requests a minute per account; other "
            "jobs may be using the same API key",
        )
    if status >= 500:
        return UnreachableError(
            f"the Neon API answered {what} with {said}"
            + (f" for {waited:.0f} s" if waited >= 1 else ""),
            "retry later; Neon's status: https://neonstatus.com",
        )
    error = NeonApiError(f"the Neon API refused {what} ({said})", status=status, code=code)
    error.said = said  # what Neon said, for a caller that words the cause itself
    return error


def unreachable(
    base_url: str, what: str, exc: Exception, sent: bool, creating: str | None, waited: float,
    scrub: Callable[[str], str],
) -> UnreachableError:  # fmt: skip
    """The error for a request that got no answer (after the retries it was worth)."""
    host = urlsplit(base_url).netloc
    detail = scrub(str(exc)) or type(exc).__name__
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


def error_body(response: httpx.Response) -> tuple[str | None, str]:
    """Neon's error `code` (None without one) and message, on one line, cut short."""
    try:
        body = response.json()
    except ValueError:
        return None, " ".join(response.text.split())[:200]
    if not isinstance(body, dict):
        return None, ""
    code = body.get("code")
    return (str(code) if code else None), " ".join(str(body.get("message") or "").split())[:300]


def field(body: Any, name: str, kind: type, what: str) -> Any:
    """`body[name]`, which must be a `kind`: else the API changed, and it is said so."""
    value = body.get(name) if isinstance(body, dict) else None
    if not isinstance(value, kind):
        raise NeonApiError(
            f"the Neon API's answer for {what} has no {name!r}",
            "the API may have changed: report this",
        )
    return value
