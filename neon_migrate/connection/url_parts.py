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
from urllib.parse import quote, unquote

import psycopg2
from psycopg2.extensions import parse_dsn

from neon_migrate.connection.masking import mask, mask_text, secrets_of
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
# libpq reads `u:p@ss@h` as password "p", host "ss@h"; we would read "p@ss" and "h". A URL
# read two ways by its two readers is refused, as the user's other tools would misread it too.
_AT_PROBLEM = (
    "has more than one '@' before its host, so its user name or password holds an "
    "unencoded '@' (libpq would take the host from after the first one)"
)
_LIBPQ_PARAMETERS = "https://www.postgresql.org/docs/current/libpq-connect.html#LIBPQ-PARAMKEYWORDS"


def _unencoded_fix(var: str) -> str:
    return (
        f"percent-encode the password in {var}: '/' as %2F, '?' as %3F, '@' as %40, "
        "'%' as %25 (an '@' in the database name as %40)"
    )


def _libpq_refusal(reason: str) -> Malformed:
    """libpq's own parser refused the URL: `reason` is its message, already masked."""
    if "percent-encoded" in reason:
        return Malformed(
            f"has a bad percent-escape: {reason}",
            lambda var: f"write each literal '%' in {var} as %25",
        )
    if "query parameter" in reason:
        return Malformed(
            f"has an invalid connection option: {reason}",
            lambda var: f"correct or remove that option in {var} (libpq's: {_LIBPQ_PARAMETERS})",
        )
    return Malformed(f"is not a URL libpq can read: {reason}")


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

    @property
    def libpq_dsn(self) -> str:
        """The URL as libpq is given it: scheme `postgresql://`, the rest byte-for-byte except
        the passwords, percent-encoded afresh so that libpq never quotes one in an error."""
        tail = encode_query_secrets(self.tail)
        return f"postgresql://{encoded_userinfo(self)}{self.host_text}{self.port_text}{tail}"

    @cached_property
    def fields(self) -> dict[str, str]:
        """Every connection parameter as libpq reads it: its own parser (PQconninfoParse)
        decides each value, so ours can never disagree with the connection's. Raises
        Malformed with libpq's reason, passwords masked: libpq may quote the whole URL."""
        if "\x00" in unquote(self.render()):  # libpq cannot take it; Python raises ValueError
            raise Malformed("contains a NUL character (%00)")
        try:
            self.render().encode("utf-8")
        except UnicodeEncodeError:  # bytes the environment could not decode: unsendable
            raise Malformed("is not valid UTF-8 text") from None
        try:
            return parse_dsn(self.libpq_dsn)
        except psycopg2.Error as err:
            reason = " ".join(str(err).split()).removeprefix("invalid dsn: ")
            secrets = secrets_of(self.render()) + secrets_of(self.libpq_dsn)
            raise _libpq_refusal(mask_text(reason, secrets)) from None

    @property
    def host_in_query(self) -> bool:
        """Whether a `host=` query parameter names the host (libpq lets it win)."""
        pieces = (piece.partition("=") for piece in self.tail.partition("?")[2].split("&"))
        return any(unquote(key) == "host" and value for key, _, value in pieces)

    @property
    def host(self) -> str:
        """The host libpq connects to, decoded, without IPv6 brackets."""
        return self.fields.get("host", "")

    @property
    def database(self) -> str:
        return self.fields.get("dbname", "")


def host_of(url: str) -> str | None:
    """The host `url` connects to (decoded, no IPv6 brackets); None if absent or unparsable."""
    try:
        return split(url).host or None
    except Malformed:
        return None


def query_value(url: str, key: str) -> str | None:
    """A connection parameter's value as libpq reads it; None when absent or unparsable."""
    try:
        return split(url).fields.get(key)
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
    if any(role == "rest" for _, role in query_roles(parts.tail.partition("?")[2])):
        raise invalid(
            var,
            url,
            "has a query parameter right after its password that libpq does not know "
            "(the rest of a password holding a raw '&'?)",
            _raw_ampersand_fix,
        )
    try:
        fields = parts.fields
    except Malformed as err:
        raise invalid(var, url, err.problem, err.fix) from None
    if not parts.host:
        raise invalid(var, url, "names no host")
    if not parts.database:
        raise invalid(var, url, "names no database")
    if fields.get("port") and not is_port(fields["port"]):  # the netloc's was checked: a query's
        raise invalid(var, url, "has a port parameter that is not a number from 1 to 65535")
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
    if "@" in userinfo:
        raise Malformed(_AT_PROBLEM, _unencoded_fix)
    host_text, port_text = split_hostport(hostport)
    return Parts(scheme + sep + userinfo + at, host_text, port_text, rest[end:])


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
    """The userinfo's password, decoded; None when it has none."""
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
