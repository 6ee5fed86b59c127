"""Reading a URL's structure without trusting it: where its netloc ends, where its userinfo
ends when a password holds unencoded delimiters, and what each query piece is.

Masking and validation both need these answers for text that may be broken in exactly the
ways a pasted password breaks a URL; so they read raw text, and never decode or re-render it.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from functools import lru_cache
from urllib.parse import quote, unquote

import psycopg2
from psycopg2.extensions import parse_dsn

SCHEME_NAME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*")
SCHEME_PREFIX = re.compile(SCHEME_NAME.pattern + "://")
SCHEME_IN_TEXT = re.compile(r"(?<![A-Za-z0-9+.-])" + SCHEME_PREFIX.pattern)

# Keys whose values are secrets: libpq's (password, sslpassword, oauth_client_secret,
# scram_*_key), and anything else named like a password (PGPASSWORD=, db_password=).
SECRET_KEY_TEXT = r"\w*(?:password|secret)|scram_(?:client|server)_key"
_SECRET_KEY = re.compile(SECRET_KEY_TEXT, re.IGNORECASE)


class Malformed(ValueError):
    """A URL's structure is broken; `problem` completes "DATABASE_URL …" in a message.

    `fix`, given the variable's name, says what to do when the generic fix (an example
    URL) would not fit the cause.
    """

    def __init__(self, problem: str, fix: Callable[[str], str] | None = None) -> None:
        super().__init__(problem)
        self.problem = problem
        self.fix = fix


@lru_cache(maxsize=512)
def is_libpq_keyword(key: str) -> bool:
    """True when libpq takes `key` as a parameter in a URI's query. libpq's own parser
    answers (it refuses a keyword it does not know), so the answer is always that of the
    libpq that will connect, never a list that goes stale.

    A query piece after `password=` whose key this refuses (or that has no '=') is the rest
    of a password holding a raw '&': libpq would quote it in its error, so it is masked with
    the password and the URL is refused.
    """
    if not key or "\x00" in key:
        return False
    try:
        parse_dsn(f"postgresql://?{quote(key, safe='', errors='surrogatepass')}=1")
    except psycopg2.Error:
        return False
    return True


def is_secret_key(key: str) -> bool:
    """True for a connection parameter whose value is a secret (`password`, `sslpassword`…)."""
    return bool(_SECRET_KEY.fullmatch(unquote(key).strip()))


def split_hostport(hostport: str) -> tuple[str, str]:
    if hostport.startswith("["):
        close = hostport.find("]")
        if close < 0:
            raise Malformed("has an IPv6 address without its closing ']'")
        host_text, port_text = hostport[: close + 1], hostport[close + 1 :]
    elif "," in hostport:
        raise Malformed("lists several hosts; only one host is supported")
    elif hostport.count(":") > 1:
        raise Malformed("has an IPv6 address that is not in [brackets]")
    else:
        host_text, colon, port = hostport.partition(":")
        port_text = colon + port
    if port_text and not (port_text.startswith(":") and is_port(port_text[1:])):
        raise Malformed("has a port that is not a number from 1 to 65535")
    return host_text, port_text


def is_port(text: str) -> bool:
    return text.isascii() and text.isdigit() and 1 <= int(text) <= 65535


def netloc_end(text: str, start: int) -> int:
    ends = [i for i in (text.find("/", start), text.find("?", start)) if i >= 0]
    return min(ends, default=len(text))


def userinfo_at(url: str, start: int, end: int) -> tuple[int, bool]:
    """Where the userinfo of the URL whose netloc runs from `start` to `end` (the first '/'
    or '?') ends: (index of its '@' or -1, whether that reading is a guess at a password
    holding an unencoded '/' or '?').

    Read plainly, the userinfo ends at the netloc's last '@'. An '@' further on that cannot
    belong where it sits (in the path, a query key, a piece with no '=', the value of a
    parameter libpq does not know; or, when the netloc has no '@', anywhere after a "port"
    that is not one) means the netloc ended inside the password: the userinfo then ends at
    the last such '@'.
    """
    later = _later_ats(url, end)
    misplaced = [i for i, where in later if where != "value" and url.find(":", start, i) >= 0]
    if misplaced:
        return misplaced[-1], True
    netloc_at = url.rfind("@", start, end)
    if netloc_at >= 0:
        return netloc_at, False
    if later and ":" in url[start:end] and not is_hostport(url[start:end]):
        return later[-1][0], True
    return -1, False


def _later_ats(url: str, end: int) -> list[tuple[int, str]]:
    """Each '@' after the netloc, with where it sits: "stray" (the path, a query key, a
    piece with no '='), "value" (a libpq parameter's value) or "unknown" (another value)."""
    query_at = url.find("?", end)
    path_end = query_at if query_at >= 0 else len(url)
    found = [(i, "stray") for i in range(end, path_end) if url[i] == "@"]
    if query_at < 0:
        return found
    offset = query_at + 1
    for piece, role in query_roles(url[offset:]):
        key, eq, _ = piece.partition("=")
        for i in (i for i, char in enumerate(piece) if char == "@"):
            if role == "rest":  # the rest of a password= value holding a raw '&'
                where = "value"
            elif not eq or i < len(key):
                where = "stray"
            else:
                where = "value" if is_libpq_keyword(unquote(key)) else "unknown"
            found.append((offset + i, where))
        offset += len(piece) + 1
    return found


def is_hostport(hostport: str) -> bool:
    try:
        split_hostport(hostport)
    except Malformed:
        return False
    return True


def query_roles(query: str) -> list[tuple[str, str]]:
    """The query's '&' pieces, each with its role: "secret" (`password=…` and the like),
    "rest" (a piece after a secret one that no libpq parameter explains: the rest of a
    value holding a raw '&'), or "other"."""
    roles: list[tuple[str, str]] = []
    in_secret = False
    for piece in query.split("&") if query else []:
        key, eq, _ = piece.partition("=")
        if in_secret and not (eq and is_libpq_keyword(unquote(key))):
            roles.append((piece, "rest"))
            continue
        in_secret = bool(eq) and is_secret_key(key)
        roles.append((piece, "secret" if in_secret else "other"))
    return roles
