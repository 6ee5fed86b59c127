"""Waiting for Neon's operations: a branch is usable once its operations have finished.

Statuses as in Neon's reference: `finished` and `skipped` are done; `cancelling` and
`cancelled` are an error at once, and so is `error` (terminal: Neon does not retry it);
`failed` is not final (the control plane retries the operation itself), so it is an
error only when it stays failed for a grace period. Polling backs off from 0.1 s to 2 s,
jittered, and the whole wait is bounded.
"""

from __future__ import annotations

import random
import time
from collections.abc import Iterable
from typing import Any, Protocol

from neon_migrate.branches.answers import CreatedBranch, NeonApiError

DONE = frozenset({"finished", "skipped"})
CANCELLED = frozenset({"cancelling", "cancelled"})
FAILED = "failed"
ERROR = "error"


class OperationReader(Protocol):
    retry_total_s: float

    def operation(self, operation_id: str, *, budget: float | None = None) -> dict[str, Any]: ...


def wait_for_operations(
    api: OperationReader,
    operation_ids: Iterable[str],
    deadline_s: float,
    failed_grace_s: float = 30.0,
) -> None:
    """Poll until every operation is finished (or skipped), at most `deadline_s` seconds;
    errors name the operation and its action."""
    pending = list(dict.fromkeys(operation_ids))
    end = time.monotonic() + deadline_s
    failed_since: dict[str, float] = {}
    interval = 0.1
    while pending:
        waiting: list[dict[str, Any]] = []
        for op_id in pending:
            remaining = max(end - time.monotonic(), 1.0)
            op = api.operation(op_id, budget=min(api.retry_total_s, remaining))
            status = op.get("status")
            if status in DONE:
                continue
            if status in CANCELLED:  # often the consequence of another's error: name that
                raise _cause_of_cancel(api, op, pending, min(api.retry_total_s, remaining))
            if status == ERROR:  # terminal: Neon does not retry it
                raise operation_error(op, "ended in error")
            if status == FAILED:
                first = failed_since.setdefault(op_id, time.monotonic())
                if time.monotonic() - first >= failed_grace_s:
                    raise operation_error(op, "failed")
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


def operation_error(op: dict[str, Any], how: str) -> NeonApiError:
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


def adopt(api: Any, made: dict[str, Any]) -> CreatedBranch:
    """A branch whose creation's answer was lost, found by name: its read-write endpoint
    from the API, and its readiness waited for (no operation ids came back)."""
    branch_id = str(made["id"])
    end = time.monotonic() + 300
    while True:
        state = api.branch(branch_id).get("current_state")
        writable = [e for e in api.branch_endpoints(branch_id)
                    if e.get("type") == "read_write"]  # fmt: skip
        if state == "ready" and writable:
            break
        if time.monotonic() > end:
            raise NeonApiError(
                f"branch {made.get('name')} ({branch_id}) was created but is not ready after 300 s",
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


def _cause_of_cancel(api: OperationReader, cancelled: dict, ids: list[str], budget: float):
    """Neon cancels the operations that depend on one that ended in error (a compute's
    start after its branch's creation): the error is the cause to report, read again
    here, since it may have been read as running a moment before it failed."""
    for op_id in ids:
        if op_id == str(cancelled.get("id")):
            continue
        op = api.operation(op_id, budget=budget)
        if op.get("status") == ERROR:
            return operation_error(op, "ended in error")
        if op.get("status") == FAILED:
            return operation_error(op, "failed")
    return operation_error(cancelled, "was cancelled")
