"""Database URL logic: parse, pair Neon's pooled and direct endpoints, add TLS, mask passwords.

Neon gives each compute two hosts, a pooled one (PgBouncer) for the app and a direct one for
migrations, and users usually paste only one of them; this module derives the other, refuses
a pairing that would send migrations through the pooler, and asks for TLS on remote hosts.
It works by string surgery and never re-renders a URL through a URL library, because
re-rendering re-encodes passwords and reorders or drops parameters (`channel_binding`,
`options=endpoint%3D…`) that libpq must receive exactly as the user wrote them.

Masking works on structure, never by searching text for the password: a URL's userinfo and
its secret query parameters (`password=`, `sslpassword=`, …), and the values of secret keys
in libpq "key=value" strings. The one exception, `mask_text`, also replaces a known password
in a driver's message, but only where that cannot hide other words: a whole quoted token, or
a password long enough to be unambiguous.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import TYPE_CHECKING
from urllib.parse import parse_qsl, quote, unquote, unquote_plus

from neon_migrate.errors import ConfigError

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
_SCHEME_IN_TEXT = re.compile(r"(?<![A-Za-z0-9+.-])" + _SCHEME_PREFIX.pattern)
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")

# libpq's connection keywords (libpq 17 and 18). A query piece after `password=` that is not
# one of them (or has no '=') is the rest of a password holding a raw '&': libpq would quote
# it in its error, so it is masked with the password and the URL is refused.
_LIBPQ_KEYS = frozenset(
    [
        "application_name",
        "channel_binding",
        "client_encoding",
        "connect_timeout",
        "dbname",
        "fallback_application_name",
        "gssdelegation",
        "gssencmode",
        "gsslib",
        "host",
        "hostaddr",
        "keepalives",
        "keepalives_count",
        "keepalives_idle",
        "keepalives_interval",
        "krbsrvname",
        "load_balance_hosts",
        "max_protocol_version",
        "min_protocol_version",
        "oauth_client_id",
        "oauth_client_secret",
        "oauth_issuer",
        "oauth_scope",
        "options",
        "passfile",
        "password",
        "port",
        "replication",
        "require_auth",
        "requirepeer",
        "requiressl",
        "scram_client_key",
        "scram_server_key",
        "service",
        "ssl_max_protocol_version",
        "ssl_min_protocol_version",
        "sslcert",
        "sslcertmode",
        "sslcompression",
        "sslcrl",
        "sslcrldir",
        "sslkey",
        "sslkeylogfile",
        "sslmode",
        "sslnegotiation",
        "sslpassword",
        "sslrootcert",
        "sslsni",
        "target_session_attrs",
        "tcp_user_timeout",
        "user",
    ]
)
# Keys whose values are secrets: libpq's (password, sslpassword, oauth_client_secret,
# scram_*_key), and anything else named like a password (PGPASSWORD=, db_password=).
_SECRET_KEY_TEXT = r"\w*(?:password|secret)|scram_(?:client|server)_key"
_SECRET_KEY = re.compile(_SECRET_KEY_TEXT, re.IGNORECASE)
# `key = value` where the key is a secret one, in a "key=value" string or any text.
_SECRET_ASSIGNMENT = re.compile(rf"(?<![\w.-])(?:{_SECRET_KEY_TEXT})\s*=\s*", re.IGNORECASE)
_CONNINFO_START = re.compile(r"\s*[A-Za-z_][\w.-]*\s*=")
_MASKED_VALUE = re.compile(r"\*\*\*(?=[&\s]|$)")
# A known password is replaced anywhere in a message only from this length on; a shorter
# one only where a whole quoted token is exactly the password.
UNAMBIGUOUS_LENGTH = 6

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
    """A URL's structure is broken; `problem` completes "DATABASE_URL …" in a message.

    `fix`, given the variable's name, says what to do when the generic fix (an example
    URL) would not fit the cause.
    """

    def __init__(self, problem: str, fix: Callable[[str], str] | None = None) -> None:
        super().__init__(problem)
        self.problem = problem
        self.fix = fix


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

    Takes one URL (also without its scheme, `user:pw@host/db`) or a libpq "key=value"
    string. Masks by structure: the userinfo's password, secret query parameters
    (`password=`, `sslpassword=`, … and, with a raw '&' in such a value, the pieces that
    follow it) and secret keys' values; never a substring found elsewhere. When the
    structure is unclear (an '@' after the host) it hides more rather than less.
    """
    if not isinstance(url, str):
        return "***"
    prefix = _SCHEME_PREFIX.match(url)
    if prefix:
        return _mask_assignments(_mask_url(url, prefix.end()))
    if _CONNINFO_START.match(url):  # its dbname may hold a URL: libpq expands it
        return mask_text(url)
    return _mask_assignments(_mask_url(url, 0))


def mask_text(text: str, secrets: Iterable[str | None] = ()) -> str:
    """Any message with the passwords in it masked: for what a driver or a library says.

    The known `secrets` (a password, raw and decoded): where a whole quoted token is
    exactly one of them, and anywhere as a whole word once it is long enough
    (UNAMBIGUOUS_LENGTH) that it cannot stand for other words: a one-letter password must
    not turn "port" into "***ort". Then by structure: every URL in the text (see `mask`)
    and every secret `key=value`, whoever's password they hold.
    """
    if not isinstance(text, str):
        return "***"
    text = _mask_known(text, secrets)  # first: structural masking would cut a password up
    secret_values = [
        (m.end(), _conninfo_value_end(text, m.end())) for m in _SECRET_ASSIGNMENT.finditer(text)
    ]
    starts = [  # a "scheme://" inside a secret value is part of the secret, masked below
        m.start()
        for m in _SCHEME_IN_TEXT.finditer(text)
        if not any(a <= m.start() < b for a, b in secret_values)
    ]
    pieces, last = [], 0
    for start, end in zip(starts, [*starts[1:], len(text)], strict=False):
        pieces.append(text[last:start])
        quote_char = text[start - 1] if start and text[start - 1] in "\"'" else ""
        close = _closing_quote(text, quote_char, start, end) if quote_char else -1
        stop = close if close > start else end  # a quoted URL ends at its closing quote
        segment = text[start:stop]
        pieces.append(_mask_url(segment, segment.index("://") + 3))
        last = stop
    pieces.append(text[last:])
    return _mask_assignments("".join(pieces))


def secrets_of(url: str) -> tuple[str, ...]:
    """Every password `url` holds, as written and decoded: its userinfo's and its secret
    query parameters'. What a message must never show, for `mask_text`."""
    if not isinstance(url, str):
        return ()
    found: list[str] = []
    prefix = _SCHEME_PREFIX.match(url)
    if not prefix and _CONNINFO_START.match(url):
        for match in _SECRET_ASSIGNMENT.finditer(url):
            value = url[match.end() : _conninfo_value_end(url, match.end())]
            found += [value, re.sub(r"\\(.)", r"\1", value.strip("'"))]
        return tuple(dict.fromkeys(form for form in found if form))
    start = prefix.end() if prefix else 0
    end = _netloc_end(url, start)
    at, _ = _userinfo_at(url, start, end)
    if at >= 0:
        _, colon, password = url[start:at].partition(":")
        if colon:
            found += [password, unquote(password)]
    elif _mask_non_numeric_port(url[:end], start) != url[:end]:  # a password with no host
        password = url[start:end].rpartition(":")[2]
        found += [password, unquote(password)]
    for piece, role in _query_roles(url[max(at, end) :].partition("?")[2]):
        if role != "other":
            value = piece.partition("=")[2] if role == "secret" else piece
            found += [value, unquote(value), unquote_plus(value)]
    return tuple(dict.fromkeys(form for form in found if form))


def is_secret_key(key: str) -> bool:
    """True for a connection parameter whose value is a secret (`password`, `sslpassword`…)."""
    return bool(_SECRET_KEY.fullmatch(unquote(key).strip()))


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
    user = (parts.userinfo or "").partition(":")[0]
    password = _userinfo_password(parts)
    # SQLAlchemy gets the userinfo re-encoded (it splits the netloc at the first '@'), and
    # our reading of user, password and host wins: it does not decode a socket-path host.
    clean = f"{parts.scheme}://{_encoded_userinfo(parts)}{parts.host_text}{parts.port_text}"
    try:
        parsed = make_url(clean + parts.tail)
    except (ArgumentError, ValueError):
        raise _invalid("the database URL", url, "could not be parsed") from None
    query_password = _query_secret(parts.tail, "password")
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
    parts = _parse(url, "the database URL")
    password = _userinfo_password(parts)
    # Re-encoded, so an '@' or ':' the user left unencoded cannot move libpq's split.
    tail = _encode_query_secrets(parts.tail)
    dsn = f"postgresql://{_encoded_userinfo(parts)}{parts.host_text}{parts.port_text}{tail}"
    query_port = parts.params.get("port")  # libpq lets it win over the netloc's
    port = int(query_port) if query_port else int(parts.port_text[1:] or 5432)
    return Target(
        dsn=dsn, host=parts.host or None, port=port, password=password, secrets=secrets_of(url)
    )


def _userinfo_password(parts: _Parts) -> str | None:
    _, has_password, password = (parts.userinfo or "").partition(":")
    return unquote(password) if has_password else None


def _encoded_userinfo(parts: _Parts) -> str:
    """The userinfo percent-encoded afresh, with its '@' ("" when there is none)."""
    if parts.userinfo is None:
        return ""
    user = parts.userinfo.partition(":")[0]
    password = _userinfo_password(parts)
    userinfo = quote(unquote(user), safe="")
    if password is not None:
        userinfo += ":" + quote(password, safe="")
    return userinfo + "@"


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
        raise _invalid(var, url, err.problem, err.fix) from None
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
    if not _is_utf8(url):  # bytes the environment could not decode: unprintable, unsendable
        raise _invalid(var, url, "is not valid UTF-8 text")
    if any(role == "rest" for _, role in _query_roles(parts.tail.partition("?")[2])):
        raise _invalid(
            var,
            url,
            "has a query parameter right after its password that libpq does not know "
            "(the rest of a password holding a raw '&'?)",
            _raw_ampersand_fix,
        )
    return parts


def _split(url: str) -> _Parts:
    """Cut a URL into raw pieces; the netloc ends at the first '/' or '?' after '://'."""
    scheme, sep, rest = url.partition("://")
    if not sep or not scheme:
        raise _Malformed("is not a URL")
    end = _netloc_end(rest, 0)
    if _userinfo_at(rest, 0, end)[1]:
        raise _Malformed(_UNENCODED_PROBLEM, _unencoded_fix)
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


def _is_utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


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


def _invalid(
    var: str, url: str, problem: str, fix: Callable[[str], str] | None = None
) -> ConfigError:
    shown = _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", mask(url))  # keep it one line
    shown = shown.encode("utf-8", "backslashreplace").decode("utf-8")  # and printable
    return ConfigError(
        f"{var} {problem}: {shown}", fix(var) if fix else f"set {var} to a URL like {_EXAMPLE}"
    )


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


def _userinfo_at(url: str, start: int, end: int) -> tuple[int, bool]:
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
    if later and ":" in url[start:end] and not _is_hostport(url[start:end]):
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
    for piece, role in _query_roles(url[offset:]):
        key, eq, _ = piece.partition("=")
        for i in (i for i, char in enumerate(piece) if char == "@"):
            if role == "rest":  # the rest of a password= value holding a raw '&'
                where = "value"
            elif not eq or i < len(key):
                where = "stray"
            else:
                where = "value" if unquote(key) in _LIBPQ_KEYS else "unknown"
            found.append((offset + i, where))
        offset += len(piece) + 1
    return found


def _is_hostport(hostport: str) -> bool:
    try:
        _split_hostport(hostport)
    except _Malformed:
        return False
    return True


def _query_roles(query: str) -> list[tuple[str, str]]:
    """The query's '&' pieces, each with its role: "secret" (`password=…` and the like),
    "rest" (a piece after a secret one that no libpq parameter explains: the rest of a
    value holding a raw '&'), or "other"."""
    roles: list[tuple[str, str]] = []
    in_secret = False
    for piece in query.split("&") if query else []:
        key, eq, _ = piece.partition("=")
        if in_secret and not (eq and unquote(key) in _LIBPQ_KEYS):
            roles.append((piece, "rest"))
            continue
        in_secret = bool(eq) and is_secret_key(key)
        roles.append((piece, "secret" if in_secret else "other"))
    return roles


def _query_secret(tail: str, key: str) -> str | None:
    """Query parameter `key`'s (last) value, decoded as libpq decodes it ('+' stays '+')."""
    value = None
    for piece, role in _query_roles(tail.partition("?")[2]):
        name, _, raw = piece.partition("=")
        if role == "secret" and unquote(name) == key:
            value = unquote(raw)
    return value


def _encode_query_secrets(tail: str) -> str:
    """`tail` with each secret query value percent-encoded afresh (a bad escape such as
    `%zz` becomes `%25zz`): libpq quotes a value it cannot decode in its error."""
    path, sep, query = tail.partition("?")
    pieces = []
    for piece, role in _query_roles(query):
        if role == "secret":
            key, _, value = piece.partition("=")
            piece = f"{key}={quote(unquote(value), safe='')}"
        pieces.append(piece)
    return path + sep + "&".join(pieces)


def _mask_url(url: str, start: int) -> str:
    """The URL whose netloc begins at `start`, its password and secret parameters masked."""
    end = _netloc_end(url, start)
    at, _ = _userinfo_at(url, start, end)
    if at >= 0:
        colon = url.find(":", start, at)
        head = url[:at] if colon < 0 else url[: colon + 1] + "***"
        rest = url[at:]
    else:
        head, rest = _mask_non_numeric_port(url[:end], start), url[end:]
    path, sep, query = rest.partition("?")
    pieces = [
        piece.partition("=")[0] + "=***" if role == "secret" else piece
        for piece, role in _query_roles(query)
        if role != "rest"
    ]
    return head + path + sep + "&".join(pieces)


def _mask_non_numeric_port(netloc_text: str, start: int) -> str:
    """With no '@', a non-numeric "port" is most likely a password whose host is missing."""
    netloc = netloc_text[start:]
    host_end = netloc.find("]") + 1 if netloc.startswith("[") else 0
    colon = netloc.find(":", host_end)
    if colon < 0 or _is_port(netloc[colon + 1 :]):
        return netloc_text
    return netloc_text[: start + colon + 1] + "***"


def _mask_assignments(text: str) -> str:
    """Each secret key's value in `key=value` text masked, read as libpq reads a value:
    quoted ('…', with backslash escapes) to its closing quote, else to the next space."""
    pieces, last = [], 0
    while match := _SECRET_ASSIGNMENT.search(text, last):
        value_at = match.end()
        if _MASKED_VALUE.match(text, value_at):  # a URL's parameter, masked already
            pieces.append(text[last : value_at + 3])
            last = value_at + 3
            continue
        pieces.append(text[last:value_at] + "***")
        last = _conninfo_value_end(text, value_at)
    return "".join(pieces) + text[last:]


def _conninfo_value_end(text: str, at: int) -> int:
    quoted = text.startswith("'", at)
    i = at + 1 if quoted else at
    while i < len(text):
        char = text[i]
        if char == "\\":
            i += 2
        elif quoted and char == "'":
            return i + 1
        elif not quoted and char.isspace():
            return i
        else:
            i += 1
    return len(text)


def _closing_quote(text: str, quote_char: str, start: int, end: int) -> int:
    """The quote closing a quoted URL: the first one that ends a token (followed by the end,
    a space or punctuation), so a quote inside a raw password does not cut it short."""
    for match in re.finditer(re.escape(quote_char) + r"(?=$|[\s;,)]|[.:](?:$|\s))", text):
        if start < match.start() < end:
            return match.start()
    return -1


def _mask_known(text: str, secrets: Iterable[str | None]) -> str:
    """Known passwords masked only where that cannot hide other words (see mask_text)."""
    forms: set[str] = set()
    for secret in secrets:
        if isinstance(secret, str) and secret:
            encoded = (
                quote(secret, safe="", errors="surrogatepass"),
                quote(secret, errors="surrogatepass"),
            )
            forms |= {secret, unquote(secret), *encoded}
    for form in sorted((f for f in forms if f and f != "***"), key=len, reverse=True):
        for quote_char in "\"'":
            text = text.replace(f"{quote_char}{form}{quote_char}", f"{quote_char}***{quote_char}")
        if len(form) >= UNAMBIGUOUS_LENGTH:
            left = r"(?<!\w)" if re.match(r"\w", form[0]) else ""
            right = r"(?!\w)" if re.match(r"\w", form[-1]) else ""
            text = re.sub(left + re.escape(form) + right, "***", text)
    return text
