"""A database URL cut into the raw pieces it was written with, and validated.

The pieces join back into exactly the original string: pairing and TLS rewrite a URL by
string surgery, never by re-rendering it through a URL library, because re-rendering
re-encodes passwords and reorders or drops parameters (`channel_binding`,
`options=endpoint%3D…`) that libpq must receive exactly as the user wrote them.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from urllib.parse import parse_qsl, quote, unquote

from neon_migrate.connection.masking import mask
from neon_migrate.connection.url_scan import (
    SCHEME_NAME,
    Malformed,
    is_port,
    netloc_end,
    query_roles,
    split_hostport,
    userinfo_at,
)
from neon_migrate.errors import ConfigError

SCHEMES = ("postgresql", "postgres", "postgresql+psycopg2", "postgresql+psycopg")
_EXAMPLE = "postgresql://USER:PASSWORD@HOST/DBNAME?sslmode=require"
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")

_UNENCODED_PROBLEM = (
    "has an '@' after its host, so its password seems to hold an unencoded '/' or '?'"
)


def _unencoded_fix(var: str) -> str:
    return (
        f"percent-encode the password in {var}: '/' as %2F, '?' as %3F, '@' as %40, "
        "'%' as %25 (an '@' in the database name as %40)"
    )


def _raw_ampersand_fix(var: str) -> str:
    return (
        f"percent-encode the password= value in {var} ('&' as %26, '%' as %25), "
        "or remove the parameter libpq does not know"
    )


@dataclass(frozen=True)
class Parts:
    """A URL cut into raw pieces that join back into exactly the original string."""

    head: str  # "scheme://" plus "userinfo@" when present
    host_text: str  # the host as written: maybe percent-encoded or an [IPv6] literal
    port_text: str  # ":5432" as written, or ""
    tail: str  # path and query as written: "/db?sslmode=require"

    def render(self) -> str:
        return self.head + self.host_text + self.port_text + self.tail

    def __repr__(self) -> str:  # the userinfo holds the password
        return f"Parts({mask(self.render())!r})"

    @property
    def scheme(self) -> str:
        return self.head.partition("://")[0]

    @property
    def userinfo(self) -> str | None:
        rest = self.head.partition("://")[2]
        return rest[:-1] if rest.endswith("@") else None

    @cached_property
    def params(self) -> dict[str, str]:
        return dict(parse_qsl(self.tail.partition("?")[2], keep_blank_values=True))

    @property
    def netloc_host(self) -> str:
        text = self.host_text
        if text.startswith("[") and text.endswith("]"):
            text = text[1:-1]
        return unquote(text)

    @property
    def host_in_query(self) -> bool:
        return bool(self.params.get("host"))

    @property
    def host(self) -> str:
        """The host libpq connects to: a `host=` query parameter wins over the netloc."""
        return self.params["host"] if self.host_in_query else self.netloc_host

    @property
    def database(self) -> str:
        return self.params.get("dbname") or unquote(self.tail.partition("?")[0].removeprefix("/"))


def host_of(url: str) -> str | None:
    """The host `url` connects to (decoded, no IPv6 brackets); None if absent or unparsable."""
    try:
        return split(url).host or None
    except Malformed:
        return None


def query_value(url: str, key: str) -> str | None:
    """A query parameter's (last) value, decoded; None when absent or unparsable."""
    try:
        return split(url).params.get(key)
    except Malformed:
        return None


def is_local_host(host: str | None) -> bool:
    """True for localhost, loopback addresses, a Unix socket directory, or no host at all."""
    if not host or host.startswith("/"):
        return True
    name = host.removeprefix("[").removesuffix("]").rstrip(".").lower()
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def given(value: str | None) -> str | None:
    """An unset or blank variable counts as not given."""
    if value is None or not value.strip():
        return None
    return value.strip()


def parse(url: str, var: str) -> Parts:
    """Split and validate one URL; every failure is a ConfigError naming `var`."""
    try:
        parts = split(url)
    except Malformed as err:
        raise invalid(var, url, err.problem, err.fix) from None
    if parts.scheme not in SCHEMES:
        raise invalid(var, url, _scheme_problem(parts.scheme))
    if not parts.host:
        raise invalid(var, url, "names no host")
    if not parts.database:
        raise invalid(var, url, "names no database")
    if parts.params.get("port") and not is_port(parts.params["port"]):
        raise invalid(var, url, "has a port parameter that is not a number from 1 to 65535")
    if "\x00" in unquote(url):  # libpq cannot take it, and Python would raise a ValueError
        raise invalid(var, url, "contains a NUL character (%00)")
    if not _is_utf8(url):  # bytes the environment could not decode: unprintable, unsendable
        raise invalid(var, url, "is not valid UTF-8 text")
    if any(role == "rest" for _, role in query_roles(parts.tail.partition("?")[2])):
        raise invalid(
            var,
            url,
            "has a query parameter right after its password that libpq does not know "
            "(the rest of a password holding a raw '&'?)",
            _raw_ampersand_fix,
        )
    return parts


def split(url: str) -> Parts:
    """Cut a URL into raw pieces; the netloc ends at the first '/' or '?' after '://'."""
    scheme, sep, rest = url.partition("://")
    if not sep or not scheme:
        raise Malformed("is not a URL")
    end = netloc_end(rest, 0)
    if userinfo_at(rest, 0, end)[1]:
        raise Malformed(_UNENCODED_PROBLEM, _unencoded_fix)
    userinfo, at, hostport = rest[:end].rpartition("@")
    host_text, port_text = split_hostport(hostport)
    return Parts(scheme + sep + userinfo + at, host_text, port_text, rest[end:])


def _is_utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _scheme_problem(scheme: str) -> str:
    accepted = ", ".join(SCHEMES)
    if SCHEME_NAME.fullmatch(scheme):
        return f"has scheme '{scheme}'; accepted: {accepted}"
    return f"has an unsupported scheme; accepted: {accepted}"


def invalid(
    var: str, url: str, problem: str, fix: Callable[[str], str] | None = None
) -> ConfigError:
    shown = _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", mask(url))  # keep it one line
    shown = shown.encode("utf-8", "backslashreplace").decode("utf-8")  # and printable
    return ConfigError(
        f"{var} {problem}: {shown}", fix(var) if fix else f"set {var} to a URL like {_EXAMPLE}"
    )


def userinfo_password(parts: Parts) -> str | None:
    _, has_password, password = (parts.userinfo or "").partition(":")
    return unquote(password) if has_password else None


def encoded_userinfo(parts: Parts) -> str:
    """The userinfo percent-encoded afresh, with its '@' ("" when there is none)."""
    if parts.userinfo is None:
        return ""
    user = parts.userinfo.partition(":")[0]
    password = userinfo_password(parts)
    userinfo = quote(unquote(user), safe="")
    if password is not None:
        userinfo += ":" + quote(password, safe="")
    return userinfo + "@"


def query_secret(tail: str, key: str) -> str | None:
    """Query parameter `key`'s (last) value, decoded as libpq decodes it ('+' stays '+')."""
    value = None
    for piece, role in query_roles(tail.partition("?")[2]):
        name, _, raw = piece.partition("=")
        if role == "secret" and unquote(name) == key:
            value = unquote(raw)
    return value


def encode_query_secrets(tail: str) -> str:
    """`tail` with each secret query value percent-encoded afresh (a bad escape such as
    `%zz` becomes `%25zz`): libpq quotes a value it cannot decode in its error."""
    path, sep, query = tail.partition("?")
    pieces = []
    for piece, role in query_roles(query):
        if role == "secret":
            key, _, value = piece.partition("=")
            piece = f"{key}={quote(unquote(value), safe='')}"
        pieces.append(piece)
    return path + sep + "&".join(pieces)
