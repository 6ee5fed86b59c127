"""A validated URL as the drivers take it: a libpq DSN for bare psycopg2 connections, a
SQLAlchemy URL (psycopg2 driver) for engines. Every value in them is libpq's own reading of
the URL (see url_parts.Parts.fields), so no driver can read it another way.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from neon_migrate.connection.masking import secrets_of
from neon_migrate.connection.url_parts import parse

if TYPE_CHECKING:  # SQLAlchemy is imported only when an engine is built: it costs start-up
    from sqlalchemy.engine import URL

_DRIVER = "postgresql+psycopg2"
_IN_URL = ("user", "password", "host", "port", "dbname")  # the rest goes in the query


def to_sqlalchemy(url: str) -> URL:
    """A SQLAlchemy URL for `url` with the psycopg2 driver. Raises ConfigError if invalid.

    Built from libpq's fields, never by SQLAlchemy's parser: it splits the netloc at the
    first '@' and reads '+' as a space. The password is never in the query, where
    SQLAlchemy's repr would show it."""
    from sqlalchemy.engine import URL

    fields = parse(url, "the database URL").fields
    return URL.create(
        _DRIVER,
        username=fields.get("user") or None,
        password=fields.get("password"),
        host=fields.get("host") or None,
        port=int(fields["port"]) if fields.get("port") else None,
        database=fields.get("dbname") or None,
        query={key: value for key, value in fields.items() if key not in _IN_URL},
    )


@dataclass(frozen=True)
class Target:
    """Where a bare libpq connection goes: the DSN and what messages may show of it."""

    dsn: str = field(repr=False)  # a libpq URI, password included: never shown
    host: str | None
    port: int
    password: str | None = field(repr=False)  # libpq's reading: the query's wins
    # Every password form the URL holds (userinfo and query, as written and decoded): what
    # a message about this target must never show (see mask_text).
    secrets: tuple[str, ...] = field(default=(), repr=False)


def to_target(url: str) -> Target:
    """A URL as libpq takes it (scheme `postgresql://`, the rest byte-for-byte, except that
    passwords are re-encoded: libpq then never quotes one in a parse error)."""
    parts = parse(url, "the database URL")
    fields = parts.fields
    return Target(
        dsn=parts.libpq_dsn,
        host=parts.host or None,
        port=int(fields.get("port") or 5432),
        password=fields.get("password"),
        secrets=secrets_of(url),
    )
