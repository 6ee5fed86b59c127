"""Neon's two endpoints from the URLs a user gives: pair them, refuse a pairing that would
send migrations through the pooler, and ask for TLS on remote hosts.

Neon gives each compute two hosts, a pooled one (PgBouncer) for the app and a direct one for
migrations, and users usually paste only one of them; `resolve` derives the other by string
surgery on the URL as written (see url_parts). The other URL helpers are importable from here
too: parsing in url_parts, masking in masking, driver forms in dsn.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from urllib.parse import unquote

from neon_migrate.connection.dsn import Target, to_sqlalchemy, to_target
from neon_migrate.connection.masking import UNAMBIGUOUS_LENGTH, mask, mask_text, secrets_of
from neon_migrate.connection.url_parts import (
    Parts,
    given,
    host_of,
    is_local_host,
    parse,
    query_value,
)
from neon_migrate.connection.url_scan import is_secret_key
from neon_migrate.errors import ConfigError

__all__ = [
    "UNAMBIGUOUS_LENGTH",
    "EndpointPair",
    "Target",
    "host_of",
    "is_local_host",
    "is_pooled",
    "is_secret_key",
    "mask",
    "mask_text",
    "query_value",
    "resolve",
    "secrets_of",
    "to_sqlalchemy",
    "to_target",
]

_APP_VAR = "DATABASE_URL"
_DIRECT_VAR = "DATABASE_URL_DIRECT"
_POOLER_SUFFIX = "-pooler"
_NEON_DOMAIN = ".neon.tech"


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


def resolve(database_url: str | None, direct_url: str | None) -> EndpointPair | None:
    """Validate the configured URLs and pair them; None when neither is set.

    `database_url` is DATABASE_URL (the app's), `direct_url` is DATABASE_URL_DIRECT or
    DATABASE_URL_UNPOOLED (the migrations'). Raises ConfigError, with no password in it.
    """
    app_text, direct_text = given(database_url), given(direct_url)
    if app_text is None and direct_text is None:
        return None
    app = parse(app_text, _APP_VAR) if app_text is not None else None
    direct = parse(direct_text, _DIRECT_VAR) if direct_text is not None else None
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


def is_pooled(url: str) -> bool:
    """True when `url` points at a Neon pooled (PgBouncer) endpoint."""
    host = host_of(url)
    return host is not None and _is_pooler_host(host)


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


def _pair_from_app(app: Parts) -> tuple[Parts, Parts, str | None]:
    """(pooled, direct, derived) when only DATABASE_URL is given."""
    if _is_pooler_host(app.host):
        return app, _with_host(app, _direct_host(app.host)), "direct"
    pooled, derived = _pooled_for(app)
    return pooled, app, derived


def _pooled_for(direct: Parts) -> tuple[Parts, str | None]:
    """The app's URL for a direct one: Neon's pooled host, or the same URL elsewhere."""
    if _is_neon_host(direct.host):
        return _with_host(direct, _pooled_host(direct.host)), "pooled"
    return direct, None


def _check_same_endpoint(app: Parts, direct: Parts) -> None:
    app_id, direct_id = _endpoint_id(app.host), _endpoint_id(direct.host)
    if app_id == direct_id:
        return
    raise ConfigError(
        f"{_APP_VAR} (host {app.host}) and {_DIRECT_VAR} (host {direct.host}) "
        "are not the same Neon endpoint",
        f"copy both URLs from the same Neon branch and compute, or unset {_DIRECT_VAR} "
        f"so it is derived from {_APP_VAR}",
    )


def _direct_is_pooled_error(direct: Parts) -> ConfigError:
    return ConfigError(
        f"{_DIRECT_VAR} points at Neon's pooled endpoint {direct.host}; migrations need the "
        "direct endpoint",
        f"remove '{_POOLER_SUFFIX}' from the host in {_DIRECT_VAR}, or unset {_DIRECT_VAR} "
        f"so it is derived from {_APP_VAR}",
    )


# ---- string surgery --------------------------------------------------------------------------


def _with_host(parts: Parts, host: str) -> Parts:
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


def _with_sslmode(parts: Parts) -> str:
    """The URL with `sslmode=require` appended for a remote host that sets no sslmode."""
    if "sslmode" in parts.fields or is_local_host(parts.host):
        return parts.render()
    return replace(parts, tail=_append_query(parts.tail, "sslmode=require")).render()


def _append_query(tail: str, pair: str) -> str:
    if "?" not in tail:
        return f"{tail}?{pair}"
    return tail + ("" if tail.endswith(("?", "&")) else "&") + pair
