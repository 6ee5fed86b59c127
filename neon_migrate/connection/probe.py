"""GET /health/db's probe: at most one per endpoint in flight, and never abandoned.

A health probe must answer within its deadline whatever the database does, and a
stalled database must not cost a thread and a session per probe. So one probe runs per
endpoint; callers that arrive meanwhile share its answer, or, once it is late, are told
at once that it is still stuck. A late probe is ended, not left behind: closed if it
connects late, its query cancelled (libpq 17's non-blocking cancel: psycopg2's cancel()
holds the GIL while it connects, and froze the whole process on a silent link) and,
if that brings no answer, its socket cut.
"""

from __future__ import annotations

import contextlib
import copy
import ctypes
import functools
import math
import os
import selectors
import socket
import threading
import time

from neon_migrate import compat
from neon_migrate.connection.endpoints import get_endpoints
from neon_migrate.connection.health import Endpoint, EndpointHealth, check_connection
from neon_migrate.errors import UnreachableError


def check_within(endpoint: Endpoint, seconds: float) -> EndpointHealth:
    """check_connection that answers within `seconds`, whatever the database does, with at
    most one probe per endpoint in flight in this process.

    A health probe must not hang on a database that accepts the TCP connection and then
    says nothing, nor retry a waking compute for half a minute. libpq's connect_timeout
    is whole seconds and at least 2, so the deadline is kept here: the check runs on a
    daemon thread `db-health-<endpoint>`, and the caller stops waiting at the deadline.

    A call made while a probe of the same endpoint is running starts none: while that
    probe is within its own deadline, the call shares its result (a probe that started
    a moment earlier is as fresh, and two load balancers probing at once then cost one
    connection, not two); once it is late, the call answers at once that the previous
    probe is still stuck, which is the truth about the endpoint and costs nothing more.

    A late probe is ended, not abandoned (see _end_late): stuck connecting, libpq gives up
    after connect_timeout per address, and a connection that completes late is closed at
    once; stuck in the query, the query is cancelled on the server, then the socket is cut
    if still no answer, connect_timeout + 1 s after the deadline at most. So a stalled
    endpoint costs at most two threads (the probe and its canceller) and one session.
    """
    endpoints = get_endpoints()
    key = (endpoint, endpoints.pooled if endpoint == "pooled" else endpoints.direct)
    deadline = time.monotonic() + seconds
    while True:
        with _probes_lock:
            probe = _probes.get(key)
            if probe is None:
                probe = _probes[key] = _Probe(endpoint, seconds, key, deadline)
                probe.thread.start()
        if not probe.late and (time.monotonic() < probe.deadline or not _expire(probe)):
            break  # ours, or one within its deadline: wait for its result
        if not probe.done.is_set():
            raise _still_stuck(probe)
        # It ended late just now and is leaving: wait for it, then start a fresh one.
        probe.thread.join(max(0.0, deadline - time.monotonic()))
        if probe.thread.is_alive():
            raise _still_stuck(probe)
    if not probe.done.wait(max(0.0, min(deadline, probe.deadline) - time.monotonic())):
        if time.monotonic() >= probe.deadline:
            _expire(probe)
        if not probe.done.is_set() or probe.late:
            stage = "in the query" if probe.connected else "connecting"
            raise UnreachableError(
                f"the {endpoint} endpoint did not answer within {seconds:g} s (stuck {stage})",
                "check the database and the network to it, or raise DB_HEALTH_TIMEOUT",
            )
    if probe.error is not None or probe.health is None:
        raise _copy(probe.error or UnreachableError(f"the {endpoint} health probe failed"))
    return probe.health


# One probe in flight per endpoint (its kind and URL): a stuck one blocks only its own.
_probes: dict[tuple[str, str], _Probe] = {}
_probes_lock = threading.Lock()


def _forget_probes() -> None:
    """In a forked worker: none of the parent's threads exist there, nor do its probes."""
    global _probes_lock
    _probes_lock = threading.Lock()
    _probes.clear()


os.register_at_fork(after_in_child=_forget_probes)
CANCEL_GRACE = 1.0  # seconds a confirmed cancel has to bring the query's error back


class _Probe:
    """One check_connection on its thread, and what a caller needs to wait for it."""

    def __init__(
        self, endpoint: Endpoint, seconds: float, key: tuple[str, str], deadline: float
    ) -> None:
        self.endpoint, self.key, self.deadline = endpoint, key, deadline
        self.started = time.monotonic()
        self.connect_timeout = max(2, math.ceil(seconds))
        self.lock = threading.Lock()
        self.done = threading.Event()  # health or error is set
        self.health: EndpointHealth | None = None
        self.error: BaseException | None = None
        self.late = False  # its deadline passed first: its outcome is nobody's
        self.connected = False
        self.socket: socket.socket | None = None  # a duplicate of the connection's socket
        self.cancel_handle: int | None = None  # libpq's PGcancelConn, when it has one
        self.canceller: threading.Thread | None = None
        self.thread = threading.Thread(
            target=_run_probe, args=(self,), name=f"db-health-{endpoint}", daemon=True
        )


def _run_probe(probe: _Probe) -> None:
    try:
        probe.health = check_connection(
            probe.endpoint,
            retry_seconds=0,
            connect_timeout=probe.connect_timeout,
            opened=lambda conn: _opened(probe, conn),
        )
    except BaseException as exc:  # handed to the waiting callers
        probe.error = exc
    finally:  # the connection is closed by now (check_connection's own finally)
        with probe.lock:
            probe.done.set()
            canceller = probe.canceller
        if canceller is not None:
            canceller.join()  # it stops within a poll slice once `done` is set
        if probe.socket is not None:
            probe.socket.close()  # the duplicate: only now does the socket really close
        if probe.cancel_handle is not None and (lib := _libpq()) is not None:
            lib.PQcancelFinish(probe.cancel_handle)
        with _probes_lock:
            if _probes.get(probe.key) is probe:
                del _probes[probe.key]


def _opened(probe: _Probe, conn) -> None:
    """Called on the probe's thread once connected, before the query."""
    with probe.lock:
        if probe.late:  # connected after its deadline: check_connection closes it at once
            raise UnreachableError(f"the {probe.endpoint} health probe connected too late")
        probe.connected = True
        # A duplicate descriptor can be shut down from another thread with no risk of
        # hitting a reused number once libpq has closed its own.
        with contextlib.suppress(OSError):
            duplicate = os.dup(conn.fileno())
            try:
                probe.socket = socket.socket(fileno=duplicate)
            except OSError:
                os.close(duplicate)
        if (lib := _libpq()) is not None:
            probe.cancel_handle = lib.PQcancelCreate(conn.pgconn_ptr) or None


def _expire(probe: _Probe) -> bool:
    """Mark the probe late, unless it has already answered; a stuck query is then ended."""
    with probe.lock:
        if probe.done.is_set():
            return False
        if not probe.late:
            probe.late = True
            if probe.connected:
                probe.canceller = threading.Thread(
                    target=_end_late,
                    args=(probe,),
                    name=f"db-health-{probe.endpoint}-cancel",
                    daemon=True,
                )
                probe.canceller.start()
        return True


def _end_late(probe: _Probe) -> None:
    """End a probe stuck in its query: cancel it on the server (which also ends a query
    waiting on a lock, which closing our end would not), then cut our end of the link."""
    outcome = "unavailable"
    if probe.cancel_handle is not None:
        deadline = time.monotonic() + probe.connect_timeout
        outcome = _cancel(probe.cancel_handle, deadline, probe.done)
    if outcome == "confirmed":
        probe.done.wait(CANCEL_GRACE)
    if not probe.done.is_set() and probe.socket is not None:
        # libpq's read returns at once and the probe closes its connection: the proxy or
        # server sees our FIN. Nothing else would end it on a peer that keeps the TCP
        # connection alive but never answers, and no new probe starts until it ends.
        with contextlib.suppress(OSError):
            probe.socket.shutdown(socket.SHUT_RDWR)


def _cancel(handle: int, deadline: float, stop: threading.Event) -> str:
    """Send a cancel request with libpq 17's non-blocking API, giving up at `deadline`.

    Never psycopg2's `connection.cancel()`: it calls PQcancel holding the GIL, and on a
    server that accepts the connection and never answers, PQcancel blocks with no bound
    (no connect_timeout, keepalive or tcp_user_timeout applies): every thread of the
    process, web requests included, stood still until the stall ended.
    """
    lib = _libpq()
    if lib is None:
        return "unavailable"
    if not lib.PQcancelStart(handle):
        return "failed"
    status = _POLLING_WRITING
    while status not in (_POLLING_OK, _POLLING_FAILED):
        sock = lib.PQcancelSocket(handle)
        if sock < 0 or stop.is_set():
            return "failed" if sock < 0 else "not needed"
        left = deadline - time.monotonic()
        if left <= 0:
            return "no answer"
        with selectors.DefaultSelector() as selector:
            reading = status == _POLLING_READING
            selector.register(sock, selectors.EVENT_READ if reading else selectors.EVENT_WRITE)
            if not selector.select(min(left, 0.1)):  # a slice: `stop` is looked at again
                continue
        status = lib.PQcancelPoll(handle)
    return "confirmed" if status == _POLLING_OK else "failed"


_POLLING_FAILED, _POLLING_READING, _POLLING_WRITING, _POLLING_OK = 0, 1, 2, 3


@functools.cache
def _libpq():
    """The libpq psycopg2 was built with, for its non-blocking cancel API (libpq >= 17),
    or None. Looked up through psycopg2's own extension module, whose dependencies are
    searched, so it is the very library that made the connection. ctypes releases the
    GIL around each call."""
    try:
        lib = ctypes.CDLL(compat.psycopg2_extension_file())
        for name, restype, argtypes in (
            ("PQcancelCreate", ctypes.c_void_p, [ctypes.c_void_p]),
            ("PQcancelStart", ctypes.c_int, [ctypes.c_void_p]),
            ("PQcancelPoll", ctypes.c_int, [ctypes.c_void_p]),
            ("PQcancelSocket", ctypes.c_int, [ctypes.c_void_p]),
            ("PQcancelFinish", None, [ctypes.c_void_p]),
        ):
            function = getattr(lib, name)
            function.restype, function.argtypes = restype, argtypes
    except (OSError, AttributeError):  # libpq < 17, or no dynamic loading here
        return None
    return lib


def _still_stuck(probe: _Probe) -> UnreachableError:
    age = time.monotonic() - probe.started
    if probe.connected:
        stage = "in the query"
        limit = probe.connect_timeout + CANCEL_GRACE
        bound = f"cancelled, then cut if still silent, within {limit:g} s of its deadline"
    else:
        stage = "connecting"
        bound = f"libpq gives up after connect_timeout, {probe.connect_timeout} s per address"
    return UnreachableError(
        f"the {probe.endpoint} endpoint did not answer: the previous probe is still stuck "
        f"{stage} after {age:.1f} s ({bound}); no new probe starts until it ends",
        "check the database and the network to it, or raise DB_HEALTH_TIMEOUT",
    )


def _copy(error: BaseException) -> BaseException:
    """The shared outcome's exception, one copy per caller (raising mutates tracebacks)."""
    try:
        return copy.copy(error)
    except Exception:
        return error
