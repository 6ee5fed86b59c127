"""Which answers of Neon's API are asked again, and for how long: on tenacity, as the
connect and the lock-retry loops are.

As Neon's API reference allows: `423 Locked` (another operation runs in the project) and
`503` are always safe to repeat; `429` was refused before any work, and its
`Retry-After` is waited for. Other 5xx (and Cloudflare's 524), and network failures after
the request was sent, may have been processed: repeated for GET and DELETE (a repeated
DELETE answers 204, or 404: already gone), never for POST (api.py looks a lost creation
up by its name instead). A request never sent (refused, connect timeout) is repeated
whatever its method. Each wait is jittered exponential backoff (0.25 s doubling, at most
8 s, at least the Retry-After), and all of them fit in the request's budget: an answer
that asks to wait past it is the last one.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable

import httpx
from tenacity import RetryCallState, Retrying

log = logging.getLogger("neon_migrate.branches.api")

RETRY_ANY_METHOD = frozenset({423, 429, 503})  # safe whatever the method
RETRY_UNLESS_POST = frozenset({500, 502, 504, 524})  # may have been processed: not for POST
NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)


def send_with_retries(
    send: Callable[[], httpx.Response], method: str, what: str, deadline: float
) -> httpx.Response:
    """`send()` again while its answer (or transport error) is worth repeating and the
    budget that ends at `deadline` (time.monotonic()) allows; then the last answer, or
    the last transport error raised."""

    def worth_repeating(state: RetryCallState) -> bool:
        outcome = state.outcome
        if outcome.failed:
            exc = outcome.exception()
            sent = not isinstance(exc, NOT_SENT)
            return isinstance(exc, httpx.TransportError) and (not sent or method != "POST")
        status = outcome.result().status_code
        return status in RETRY_ANY_METHOD or (status in RETRY_UNLESS_POST and method != "POST")

    def pause(state: RetryCallState) -> float:
        step = min(8.0, 0.25 * 2 ** (state.attempt_number - 1))
        delay = max(random.uniform(step / 2, step), retry_after_of(state) or 0.0)
        return min(delay, max(deadline - time.monotonic(), 0.0))

    def spent(state: RetryCallState) -> bool:  # never ask again too early
        remaining = deadline - time.monotonic()
        return remaining <= 0.05 or (retry_after_of(state) or 0.0) > remaining

    def note(state: RetryCallState) -> None:
        outcome = state.outcome
        reason = (
            type(outcome.exception()).__name__ if outcome.failed else outcome.result().status_code
        )
        delay = state.next_action.sleep if state.next_action else 0.0
        log.info("Neon API: %s answered %s; retrying in %.1f s", what, reason, delay)

    retrying = Retrying(
        retry=worth_repeating,
        wait=pause,
        stop=spent,
        before_sleep=note,
        retry_error_callback=lambda state: state.outcome.result(),  # the last, as it was
    )
    return retrying(send)


def retry_after_of(state: RetryCallState) -> float | None:
    outcome = state.outcome
    if outcome is None or outcome.failed:
        return None
    return retry_after(outcome.result())


def retry_after(response: httpx.Response) -> float | None:
    """Retry-After in seconds (at most 60), or None when absent or not a number."""
    value = response.headers.get("Retry-After", "")
    try:
        return max(0.0, min(float(value), 60.0))
    except ValueError:
        return None
