"""Opening a connection to Neon: retry what a waking compute throws, fail fast on the rest.

A suspended Neon compute takes from a few hundred ms to a few seconds to wake, and the
first connect meanwhile fails with one of a handful of texts. Those are retried with
jittered backoff inside a time budget; authentication and addressing errors are not,
because retrying them only delays the one-line message the user needs.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, TypeVar

import psycopg2
from tenacity import (
    Retrying,
    retry_if_exception,
    stop_after_attempt,
    stop_after_delay,
    wait_exponential_jitter,
)

from neon_migrate.connection import urls
from neon_migrate.errors import ConfigError, HarnessError, UnreachableError

if TYPE_CHECKING:
    from sqlalchemy import Engine
    from sqlalchemy.engine import Connection

    from neon_migrate.connection.urls import Target

log = logging.getLogger("neon_migrate.connection")
T = TypeVar("T")

TRANSIENT = (
    "couldn't connect to compute node",
    "connection refused",
    "no answer from the server",  # our wait deadline on a silent link (waiting.py)
    "timeout expired",
    "timed out",
    "terminating connection due to administrator command",
    "ssl syscall error: eof detected",
    "server closed the connection unexpectedly",
    "the database system is starting up",
    "the database system is shutting down",
    "could not receive data from server",
)


def driver_message(exc: BaseException, secrets: Iterable[str | None] = ()) -> str:
    """The driver's message on one line, without SQLAlchemy's boilerplate or SQL echo.

    Masked before it is cut to length: any URL or "key=value" string it quotes (by their
    structure), and the known `secrets` where that cannot hide other words (see
    urls.mask_text).
    """
    orig = getattr(exc, "orig", None) or exc
    lines = [ln.strip() for ln in str(orig).splitlines() if ln.strip()]
    skip = ("(Background", "[SQL", "HINT", "LINE ", "^")
    text = ""
    for line in (ln for ln in lines if not ln.startswith(skip)):
        # libpq wraps one sentence over lines, and starts a new sentence with a capital.
        joiner = ". " if text and line[0].isupper() and not text.endswith((".", "?", ":")) else " "
        text = f"{text}{joiner}{line}" if text else line
    text = urls.mask_text(re.sub(r"\s+", " ", text), secrets)
    return text.rstrip(".")[:400] or type(orig).__name__


def driver_error(exc: BaseException) -> bool:
    """A psycopg2 error, bare or wrapped by SQLAlchemy (DBAPIError keeps it as `.orig`)."""
    return isinstance(getattr(exc, "orig", None) or exc, psycopg2.Error)


def is_transient(exc: BaseException) -> bool:
    if not driver_error(exc):
        return False
    text = driver_message(exc).lower()
    return any(marker in text for marker in TRANSIENT)


def _secrets(url: object) -> tuple[str, ...]:
    """The passwords a Target or a SQLAlchemy URL holds, for masking messages about it."""
    found = [*getattr(url, "secrets", ()), getattr(url, "password", None)]
    query = getattr(url, "query", None)  # a SQLAlchemy URL's parameters
    if isinstance(query, Mapping):
        for key, value in query.items():
            if urls.is_secret_key(str(key)):
                found += value if isinstance(value, tuple) else [value]
    return tuple(str(s) for s in found if s)


def _quoted_after(text: str, words: str) -> str:
    """The quoted name right after `words` in a libpq message ('' when absent)."""
    match = re.search(re.escape(words) + r' "([^"]*)"', text)
    return match.group(1) if match else ""


def endpoint_name(url: Target) -> str:
    """host:port, or the unix socket a URL names (`?host=/run/postgresql`, as libpq reads
    it), for a Target or a SQLAlchemy URL: never `localhost:5432` for a socket."""
    host = url.host
    if not host:
        given = dict(getattr(url, "query", None) or {}).get("host")
        host = given[0] if isinstance(given, tuple) and given else given
    if host and str(host).startswith("/"):
        return f"socket {host}/.s.PGSQL.{url.port or 5432}"
    return f"{host or 'localhost'}:{url.port or 5432}"


def explain(
    exc: BaseException, url: Target, variable: str, elapsed: float, *, migrations: bool
) -> HarnessError:
    """Turn a connect failure into one line: what happened, where, and what to do."""
    where = endpoint_name(url)
    text = driver_message(exc, _secrets(url))
    low = text.lower()
    if 'on socket "' in low and "no such file or directory" in low:  # nothing listens there
        return UnreachableError(
            f"cannot connect to {where}: {text}",
            f"check the socket folder (host=) and port in {variable}, and that the server runs",
        )
    if "unsupported startup parameter" in low and migrations:
        return ConfigError(
            f"{where} is a connection pooler ({text}); migrations need a direct session "
            "for their advisory lock and timeouts",
            f"point {variable} at the direct endpoint (on Neon: the host without -pooler)",
        )
    if "unsupported startup parameter" in low:
        return ConfigError(
            f"the pooler at {where} rejected the connection: {text}",
            f"remove options=... from {variable}; a pooler accepts only client_encoding, "
            "datestyle, timezone, standard_conforming_strings and application_name",
        )
    if "password authentication failed" in low or "no pg_hba.conf entry" in low:
        return ConfigError(
            f"{where} rejected the login: {text}",
            f"check the user and password in {variable} (Neon console, Connection details)",
        )
    if "endpoint id is not specified" in low:
        return ConfigError(
            f"{where}: {text}",
            "use a driver built on libpq 14 or newer (psycopg2-binary >= 2.9.10), "
            f"or add options=endpoint%3D<endpoint-id> to {variable}",
        )
    if "could not translate host name" in low or "name or service not known" in low:
        return UnreachableError(f"unknown host in {variable}: {text}", "check the host name")
    if "endpoint has been disabled" in low:
        return UnreachableError(f"{where}: {text}", "enable the endpoint in the Neon console")
    if is_transient(exc):
        return UnreachableError(
            f"cannot connect to {where} after {elapsed:.1f}s: {text}",
            "check that the host and port are right and the compute is running, "
            "or raise DB_CONNECT_RETRY_SECONDS",
        )
    # Files named by the URL's TLS parameters, before "does not exist" (a role, a database).
    if "root certificate file" in low:
        path = _quoted_after(text, "root certificate file")
        problem = "does not exist" if "does not exist" in low else f"cannot be read ({text})"
        return ConfigError(
            f"TLS to {where} cannot verify the server: the root certificate file {path} "
            f"named by sslrootcert in {variable} {problem}",
            f"set sslrootcert in {variable} to the path of the CA certificate that signed the "
            "server's, or sslrootcert=system to use the system's trusted roots (Neon's "
            "certificates are publicly trusted)",
        )
    if "certificate file" in low or "private key file" in low:
        return ConfigError(
            f"TLS to {where}: the client certificate or key named by sslcert/sslkey in "
            f"{variable} cannot be used: {text}",
            f"point sslcert and sslkey in {variable} at a readable certificate and its key "
            "(private key readable by you only), or remove them",
        )
    if re.search(r'\brole "[^"]*" does not exist', low):
        return ConfigError(f"{where}: {text}", f"check the user name in {variable}")
    if re.search(r'\bdatabase "[^"]*" does not exist', low):
        return ConfigError(
            f"{where}: {text}", f"check the database name (the URL's path) in {variable}"
        )
    if "does not exist" in low:
        return ConfigError(f"{where}: {text}", f"check the user and database name in {variable}")
    if "percent-encoded" in low:
        return ConfigError(
            f"{variable} has a bad percent-escape: {text}",
            f"write each literal '%' in {variable} as %25",
        )
    if "certificate" in low or "ssl" in low:
        return ConfigError(
            f"TLS to {where} failed: {text}", f"check sslmode/sslrootcert in {variable}"
        )
    if any(
        m in low for m in ("invalid dsn", "invalid value for parameter", "configuration parameter")
    ):
        return ConfigError(
            f"{variable} has an invalid connection option: {text}", f"correct {variable}"
        )
    return HarnessError(f"connecting to {where} failed: {text}", f"check {variable}")


def with_retries(
    open_connection: Callable[[], T],
    url: Target,
    *,
    retry_seconds: float,
    variable: str,
    migrations: bool = False,
) -> T:
    """`open_connection()` with retries of transient errors; failures become HarnessError.

    `migrations` marks the migration side: a pooler rejecting it is then the mistake of
    giving migrations a pooled URL, and the message says so.
    """
    started = time.monotonic()

    def note_retry(state) -> None:
        log.warning(
            "connect to %s:%s failed (attempt %d): %s; retrying in %.1fs",
            url.host,
            url.port or 5432,
            state.attempt_number,
            driver_message(state.outcome.exception(), _secrets(url)),
            state.next_action.sleep,
        )

    retrying = Retrying(
        retry=retry_if_exception(is_transient),
        stop=stop_after_delay(retry_seconds) if retry_seconds > 0 else stop_after_attempt(1),
        wait=wait_exponential_jitter(multiplier=0.25, max=4),
        before_sleep=note_retry,
        reraise=True,
    )
    try:
        return retrying(open_connection)
    except Exception as exc:
        if not driver_error(exc):
            raise
        elapsed = time.monotonic() - started
        raise explain(exc, url, variable, elapsed, migrations=migrations) from None


def connect(
    engine: Engine, *, retry_seconds: float, variable: str, migrations: bool = False
) -> Connection:
    """`engine.connect()`, retried and explained (see with_retries)."""
    return with_retries(
        engine.connect,
        engine.url,
        retry_seconds=retry_seconds,
        variable=variable,
        migrations=migrations,
    )


def connect_raw(
    target: Target, connect_args: dict, *, retry_seconds: float, variable: str, migrations: bool
):
    """A bare psycopg2 connection in autocommit: no BEGIN, and none of the queries
    SQLAlchemy runs on an engine's first connection. For one-shot checks on Neon, where
    each of those is a round trip."""

    def open_connection():
        conn = psycopg2.connect(target.dsn, **connect_args)
        conn.autocommit = True
        return conn

    return with_retries(
        open_connection,
        target,
        retry_seconds=retry_seconds,
        variable=variable,
        migrations=migrations,
    )
