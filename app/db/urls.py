"""Database URL logic: parse, pair Neon's pooled and direct endpoints, add TLS, mask passwords.

Neon gives each compute two hosts, a pooled one (PgBouncer) for the app and a direct one for
migrations, and users usually paste only one of them; this module derives the other, refuses
a pairing that would send migrations through the pooler, and asks for TLS on remote hosts.
It works by string surgery and never re-renders a URL through a URL library, because
re-rendering re-encodes passwords and reorders or drops parameters (`channel_binding`,
`options=endpoint%3D…`) that libpq must receive exactly as the user wrote them.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import TYPE_CHECKING
from urllib.parse import parse_qsl, quote, unquote

from app.errors import ConfigError

if TYPE_CHECKING:  # SQLAlchemy is imported only when an engine is built: it costs start-up
    from sqlalchemy.engine import URL

_APP_VAR = "DATABASE_URL"
_DIRECT_VAR = "DATABASE_URL_DIRECT"
_SCHEMES = ("postgresql", "postgres", "postgresql+psycopg2", "postgresql+psycopg")
_DRIVER = "postgresql+psycopg2"
_EXAMPLE = "postgresql://USER:PASSWORD@HOST/DBNAME?sslmode=require"
_POOLER_SUFFIX = "-pooler"
_NEON_DOMAIN = ".neon.tech"

_SCHEME_NAME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*")
_SCHEME_PREFIX = re.compile(_SCHEME_NAME.pattern + "://")
# `password=` as a URL query parameter or in a libpq "key=value" string pasted by mistake.
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_PASSWORD_PARAM = re.compile(r"(?i)(\bpassword\s*=\s*)(?:'[^']*'?|[^&]*)")


@dataclass(frozen=True)
class EndpointPair:
    """The two URLs of one database: `pooled` for the app, `direct` for migrations."""

    pooled: str
    direct: str
    neon: bool
    derived: str | None  # "pooled" or "direct" when that side was derived from the other

    def __repr__(self) -> str:  # the URLs hold the password
        return (
            f"EndpointPair(pooled={mask(self.pooled)!r}, direct={mask(self.direct)!r}, "
            f"neon={self.neon}, derived={self.derived!r})"
        )


class _Malformed(ValueError):
    """A URL's structure is broken; `problem` completes "DATABASE_URL …" in a message."""

    def __init__(self, problem: str) -> None:
        super().__init__(problem)
        self.problem = problem


@dataclass(frozen=True)
class _Parts:
    """A URL cut into raw pieces that join back into exactly the original string."""

    head: str  # "scheme://" plus "userinfo@" when present
    host_text: str  # the host as written: maybe percent-encoded or an [IPv6] literal
    port_text: str  # ":5432" as written, or ""
    tail: str  # path and query as written: "/db?sslmode=require"

    def render(self) -> str:
        return self.head + self.host_text + self.port_text + self.tail

    def __repr__(self) -> str:  # the userinfo holds the password
        return f"_Parts({mask(self.render())!r})"

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


# ---- public helpers -------------------------------------------------------------------------


def resolve(database_url: str | None, direct_url: str | None) -> EndpointPair | None:
    """Validate the configured URLs and pair them; None when neither is set.

    `database_url` is DATABASE_URL (the app's), `direct_url` is DATABASE_URL_DIRECT or
    DATABASE_URL_UNPOOLED (the migrations'). Raises ConfigError, with no password in it.
    """
    app_text, direct_text = _given(database_url), _given(direct_url)
    if app_text is None and direct_text is None:
        return None
    app = _parse(app_text, _APP_VAR) if app_text is not None else None
    direct = _parse(direct_text, _DIRECT_VAR) if direct_text is not None else None
    if direct is not None and _is_pooler_host(direct.host):
        raise _direct_is_pooled_error(direct)

    derived: str | None = None
    if app is not None and direct is not None:
        _check_same_endpoint(app, direct)
        pooled = app
    elif app is not None:
        pooled, direct, derived = _pair_from_app(app)
    else:
        assert direct is not None
        pooled, derived = _pooled_for(direct)
    return EndpointPair(
        pooled=_with_sslmode(pooled),
        direct=_with_sslmode(direct),
        neon=_is_neon_host(pooled.host),
        derived=derived,
    )


def mask(url: str) -> str:
    """`url` with its password replaced by `***`; safe on malformed input, never raises.

    When the structure is unclear it hides more rather than less.
    """
    if not isinstance(url, str):
        return "***"
    return _PASSWORD_PARAM.sub(r"\1***", _mask_userinfo(url))


def is_pooled(url: str) -> bool:
    """True when `url` points at a Neon pooled (PgBouncer) endpoint."""
    host = host_of(url)
    return host is not None and _is_pooler_host(host)


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


def host_of(url: str) -> str | None:
    """The host `url` connects to (decoded, no IPv6 brackets); None if absent or unparsable."""
    try:
        return _split(url).host or None
    except _Malformed:
        return None


def to_sqlalchemy(url: str) -> URL:
    """A SQLAlchemy URL for `url` with the psycopg2 driver. Raises ConfigError if invalid."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    parts = _parse(url, "the database URL")
    user, has_password, password = (parts.userinfo or "").partition(":")
    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError):
        raise _invalid("the database URL", url, "could not be parsed") from None
    # Our reading of user, password and host is authoritative: SQLAlchemy splits the
    # netloc at the first '@' and does not decode a percent-encoded socket-path host.
    return parsed.set(
        drivername=_DRIVER,
        username=unquote(user) or None,
        password=unquote(password) if has_password else None,
        host=parts.netloc_host or None,
    )


@dataclass(frozen=True)
class Target:
    """Where a bare libpq connection goes: the DSN and what messages may show of it."""

    dsn: str = field(repr=False)  # a libpq URI, password included: never shown
    host: str | None
    port: int
    password: str | None = field(repr=False)  # to scrub from any message


def to_target(url: str) -> Target:
    """A URL as libpq takes it (scheme `postgresql://`, the rest byte-for-byte)."""
    parts = _parse(url, "the database URL")
    user, has_password, password = (parts.userinfo or "").partition(":")
    password = unquote(password) if has_password else None
    # Re-encoded, so an '@' or ':' the user left unencoded cannot move libpq's split.
    userinfo = quote(unquote(user), safe="")
    if password is not None:
        userinfo += ":" + quote(password, safe="")
    at = "@" if parts.userinfo is not None else ""
    dsn = f"postgresql://{userinfo}{at}{parts.host_text}{parts.port_text}{parts.tail}"
    query_port = parts.params.get("port")  # libpq lets it win over the netloc's
    port = int(query_port) if query_port else int(parts.port_text[1:] or 5432)
    return Target(dsn=dsn, host=parts.host or None, port=port, password=password)


def query_value(url: str, key: str) -> str | None:
    """A query parameter's (last) value, decoded; None when absent or unparsable."""
    try:
        return _split(url).params.get(key)
    except _Malformed:
        return None


# ---- parsing ---------------------------------------------------------------------------------


def _given(value: str | None) -> str | None:
    """An unset or blank variable counts as not given."""
    if value is None or not value.strip():
        return None
    return value.strip()


def _parse(url: str, var: str) -> _Parts:
    """Split and validate one URL; every failure is a ConfigError naming `var`."""
    try:
        parts = _split(url)
    except _Malformed as err:
        raise _invalid(var, url, err.problem) from None
    if parts.scheme not in _SCHEMES:
        raise _invalid(var, url, _scheme_problem(parts.scheme))
    if not parts.host:
        raise _invalid(var, url, "names no host")
    if not parts.database:
        raise _invalid(var, url, "names no database")
    if parts.params.get("port") and not _is_port(parts.params["port"]):
        raise _invalid(var, url, "has a port parameter that is not a number from 1 to 65535")
    if "\x00" in unquote(url):  # libpq cannot take it, and Python would raise a ValueError
        raise _invalid(var, url, "contains a NUL character (%00)")
    return parts


def _split(url: str) -> _Parts:
    """Cut a URL into raw pieces; the netloc ends at the first '/' or '?' after '://'."""
    scheme, sep, rest = url.partition("://")
    if not sep or not scheme:
        raise _Malformed("is not a URL")
    end = _netloc_end(rest, 0)
    userinfo, at, hostport = rest[:end].rpartition("@")
    host_text, port_text = _split_hostport(hostport)
    return _Parts(scheme + sep + userinfo + at, host_text, port_text, rest[end:])


def _split_hostport(hostport: str) -> tuple[str, str]:
    if hostport.startswith("["):
        close = hostport.find("]")
        if close < 0:
            raise _Malformed("has an IPv6 address without its closing ']'")
        host_text, port_text = hostport[: close + 1], hostport[close + 1 :]
    elif "," in hostport:
        raise _Malformed("lists several hosts; only one host is supported")
    elif hostport.count(":") > 1:
        raise _Malformed("has an IPv6 address that is not in [brackets]")
    else:
        host_text, colon, port = hostport.partition(":")
        port_text = colon + port
    if port_text and not (port_text.startswith(":") and _is_port(port_text[1:])):
        raise _Malformed("has a port that is not a number from 1 to 65535")
    return host_text, port_text


def _is_port(text: str) -> bool:
    return text.isascii() and text.isdigit() and 1 <= int(text) <= 65535


def _netloc_end(text: str, start: int) -> int:
    ends = [i for i in (text.find("/", start), text.find("?", start)) if i >= 0]
    return min(ends, default=len(text))


def _scheme_problem(scheme: str) -> str:
    accepted = ", ".join(_SCHEMES)
    if _SCHEME_NAME.fullmatch(scheme):
        return f"has scheme '{scheme}'; accepted: {accepted}"
    return f"has an unsupported scheme; accepted: {accepted}"


def _invalid(var: str, url: str, problem: str) -> ConfigError:
    shown = _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", mask(url))  # keep it one line
    return ConfigError(f"{var} {problem}: {shown}", f"set {var} to a URL like {_EXAMPLE}")


# ---- Neon pairing ----------------------------------------------------------------------------


def _first_label(host: str) -> str:
    return host.partition(".")[0]


def _is_neon_host(host: str) -> bool:
    lowered = host.lower()
    return lowered.endswith(_NEON_DOMAIN) and _first_label(lowered).startswith("ep-")


def _is_pooler_host(host: str) -> bool:
    return _is_neon_host(host) and _first_label(host).lower().endswith(_POOLER_SUFFIX)


def _endpoint_id(host: str) -> str | None:
    if not _is_neon_host(host):
        return None
    label = _first_label(host).lower()
    return label.removesuffix(_POOLER_SUFFIX)


def _direct_host(pooled_host: str) -> str:
    label, dot, domain = pooled_host.partition(".")
    return label[: -len(_POOLER_SUFFIX)] + dot + domain


def _pooled_host(direct_host: str) -> str:
    label, dot, domain = direct_host.partition(".")
    return label + _POOLER_SUFFIX + dot + domain


def _pair_from_app(app: _Parts) -> tuple[_Parts, _Parts, str | None]:
    """(pooled, direct, derived) when only DATABASE_URL is given."""
    if _is_pooler_host(app.host):
        return app, _with_host(app, _direct_host(app.host)), "direct"
    pooled, derived = _pooled_for(app)
    return pooled, app, derived


def _pooled_for(direct: _Parts) -> tuple[_Parts, str | None]:
    """The app's URL for a direct one: Neon's pooled host, or the same URL elsewhere."""
    if _is_neon_host(direct.host):
        return _with_host(direct, _pooled_host(direct.host)), "pooled"
    return direct, None


def _check_same_endpoint(app: _Parts, direct: _Parts) -> None:
    app_id, direct_id = _endpoint_id(app.host), _endpoint_id(direct.host)
    if app_id == direct_id:
        return
    raise ConfigError(
        f"{_APP_VAR} (host {app.host}) and {_DIRECT_VAR} (host {direct.host}) "
        "are not the same Neon endpoint",
        f"copy both URLs from the same Neon branch and compute, or unset {_DIRECT_VAR} "
        f"so it is derived from {_APP_VAR}",
    )


def _direct_is_pooled_error(direct: _Parts) -> ConfigError:
    return ConfigError(
        f"{_DIRECT_VAR} points at Neon's pooled endpoint {direct.host}; migrations need the "
        "direct endpoint",
        f"remove '{_POOLER_SUFFIX}' from the host in {_DIRECT_VAR}, or unset {_DIRECT_VAR} "
        f"so it is derived from {_APP_VAR}",
    )


# ---- string surgery --------------------------------------------------------------------------


def _with_host(parts: _Parts, host: str) -> _Parts:
    """Replace the host where libpq reads it: the `host=` parameter or the netloc."""
    if parts.host_in_query:
        return replace(parts, tail=_set_query_value(parts.tail, "host", host))
    return replace(parts, host_text=host)


def _set_query_value(tail: str, key: str, value: str) -> str:
    path, sep, query = tail.partition("?")
    pieces = [
        f"{key}={value}" if unquote(piece.partition("=")[0]) == key else piece
        for piece in query.split("&")
    ]
    return path + sep + "&".join(pieces)


def _with_sslmode(parts: _Parts) -> str:
    """The URL with `sslmode=require` appended for a remote host that sets no sslmode."""
    if "sslmode" in parts.params or is_local_host(parts.host):
        return parts.render()
    return replace(parts, tail=_append_query(parts.tail, "sslmode=require")).render()


def _append_query(tail: str, pair: str) -> str:
    if "?" not in tail:
        return f"{tail}?{pair}"
    return tail + ("" if tail.endswith(("?", "&")) else "&") + pair


# ---- masking ---------------------------------------------------------------------------------


def _mask_userinfo(url: str) -> str:
    prefix = _SCHEME_PREFIX.match(url)
    start = prefix.end() if prefix else 0
    # The last '@' anywhere: a password may hold an unencoded '/', '?' or '@'. A URL with
    # an '@' in its query and no password is over-masked, which is the safe side.
    at = url.rfind("@", start)
    if at >= 0:
        colon = url.find(":", start, at)
        return url if colon < 0 else url[: colon + 1] + "***" + url[at:]
    return _mask_non_numeric_port(url, start, _netloc_end(url, start))


def _mask_non_numeric_port(url: str, start: int, end: int) -> str:
    """With no '@', a non-numeric "port" is most likely a password whose host is missing."""
    netloc = url[start:end]
    host_end = netloc.find("]") + 1 if netloc.startswith("[") else 0
    colon = netloc.find(":", host_end)
    if colon < 0 or _is_port(netloc[colon + 1 :]):
        return url
    return url[: start + colon + 1] + "***" + url[end:]
