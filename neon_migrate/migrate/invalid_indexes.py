"""A revision is not stamped while an index it creates is INVALID.

A failed `CREATE INDEX CONCURRENTLY` leaves its index behind, INVALID: it costs every
write and serves no read. The README's advice for a revision that commits part of its
work is to make it safe to run again (`IF NOT EXISTS`), and on the rerun that very clause
skips the INVALID index with a NOTICE: the revision would succeed and be stamped over an
index that does not work. So the names of the indexes a revision's statements create are
noted as they are sent, and once it returns, one query asks whether any is INVALID.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import event, text
from sqlalchemy.engine import Connection

_CREATE_INDEX = re.compile(
    r"\bCREATE\s+(?:UNIQUE\s+)?INDEX\s+(?:CONCURRENTLY\s+)?(?:IF\s+NOT\s+EXISTS\s+)?"
    r'("(?:[^"]|"")+"|(?!CONCURRENTLY\b)[A-Za-z_][\w$]*)\s+ON\s',
    re.IGNORECASE,
)
_INVALID = text(
    "SELECT c.oid::regclass::text FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
    "WHERE NOT i.indisvalid AND c.relname = ANY(:names) ORDER BY 1"
)


class IndexesLeftInvalid(Exception):
    """The revision ran, and indexes it creates are INVALID."""

    def __init__(self, names: list[str]) -> None:
        self.names = names
        super().__init__(", ".join(names))


def created_names(statement: str) -> list[str]:
    """The index names `CREATE INDEX` statements in `statement` create, as PostgreSQL
    stores them (unquoted names fold to lower case)."""
    names = []
    for found in _CREATE_INDEX.findall(statement):
        quoted = found.startswith('"')
        names.append(found[1:-1].replace('""', '"') if quoted else found.lower())
    return names


@contextmanager
def watch(conn: Connection) -> Iterator[list[str]]:
    """The names of the indexes created on `conn` inside the block."""
    names: list[str] = []

    def note(_conn, _cursor, statement, *_args) -> None:
        if "INDEX" in statement.upper():
            names.extend(created_names(statement))

    event.listen(conn, "before_cursor_execute", note)
    try:
        yield names
    finally:
        event.remove(conn, "before_cursor_execute", note)


def raise_if_invalid(conn: Connection, names: list[str]) -> None:
    """One query, only after a revision that created indexes."""
    if names:
        invalid = list(conn.execute(_INVALID, {"names": sorted(set(names))}).scalars())
        if invalid:
            raise IndexesLeftInvalid(invalid)
