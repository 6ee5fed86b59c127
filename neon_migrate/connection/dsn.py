"""A validated URL as the drivers take it: a libpq DSN for bare psycopg2 connections, a
SQLAlchemy URL (psycopg2 driver) for engines.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING
from urllib.parse import unquote

from neon_migrate.connection.masking import secrets_of
from neon_migrate.connection.url_parts import (
    encode_query_secrets,
    encoded_userinfo,
    invalid,
    parse,
    query_secret,
    userinfo_password,
)

if TYPE_CHECKING:  # SQLAlchemy is imported only when an engine is built: it costs start-up
    from sqlalchemy.engine import URL

_DRIVER = "postgresql+psycopg2"


def to_sqlalchemy(url: str) -> URL:
    """A SQLAlchemy URL for `url` with the psycopg2 driver. Raises ConfigError if invalid."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    parts = parse(url, "the database URL")
    user = (parts.userinfo or "").partition(":")[0]
    password = userinfo_password(parts)
    # SQLAlchemy gets the userinfo re-encoded (it splits the netloc at the first '@'), and
    # our reading of user, password and host wins: it does not decode a socket-path host.
    clean = f"{parts.scheme}://{encoded_userinfo(parts)}{parts.host_text}{parts.port_text}"
    try:
        parsed = make_url(clean + parts.tail)
    except (ArgumentError, ValueError):
        raise invalid("the database URL", url, "could not be parsed") from None
    query_password = query_secret(parts.tail, "password")
    if query_password is not None:
        # libpq's rule: the query's password wins. Moved out of the query, where
        # SQLAlchemy's repr would show it and its parser would read '+' as a space.
        parsed, password = parsed.difference_update_query(["password"]), query_password
    return parsed.set(
        drivername=_DRIVER,
        username=unquote(user) or None,
        password=password,
        host=parts.netloc_host or None,
    )


@dataclass(frozen=True)
class Target:
    """Where a bare libpq connection goes: the DSN and what messages may show of it."""

    dsn: str = field(repr=False)  # a libpq URI, password included: never shown
    host: str | None
    port: int
    password: str | None = field(repr=False)  # the userinfo's, decoded
    # Every password form the URL holds (userinfo and query, as written and decoded): what
    # a message about this target must never show (see mask_text).
    secrets: tuple[str, ...] = field(default=(), repr=False)


def to_target(url: str) -> Target:
    """A URL as libpq takes it (scheme `postgresql://`, the rest byte-for-byte, except that
    passwords are re-encoded: libpq then never quotes one in a parse error)."""
    parts = parse(url, "the database URL")
    password = userinfo_password(parts)
    # Re-encoded, so an '@' or ':' the user left unencoded cannot move libpq's split.
    tail = encode_query_secrets(parts.tail)
    dsn = f"postgresql://{encoded_userinfo(parts)}{parts.host_text}{parts.port_text}{tail}"
    query_port = parts.params.get("port")  # libpq lets it win over the netloc's
    port = int(query_port) if query_port else int(parts.port_text[1:] or 5432)
    return Target(
        dsn=dsn, host=parts.host or None, port=port, password=password, secrets=secrets_of(url)
    )
