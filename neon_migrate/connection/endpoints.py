"""Which two URLs this process uses: from settings, or a local stand-in for Neon.

Resolved once per process. When neither DATABASE_URL nor DATABASE_URL_DIRECT is set, in
local development, the URLs come from the local provider the tooling registered: the
command line and the alembic command hand over the twin (neon_migrate.twin), so `make
migrate` works on a fresh clone. This module never imports the twin: a deployed app
carries none of it, and without a provider a missing URL is an error.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Protocol

from neon_migrate.connection import urls
from neon_migrate.errors import ConfigError
from neon_migrate.settings import Settings, get_settings


class LocalDatabase(Protocol):
    """What this module needs of a local stand-in for Neon (the twin is one)."""

    @property
    def pooled_url(self) -> str: ...
    @property
    def direct_url(self) -> str: ...
    @property
    def state_file(self) -> Path: ...  # where its password is kept, for messages
    def describe(self) -> list[str]: ...
    def pool_limits(self) -> dict[str, int]: ...  # its pooler's, for the pool's ceiling


# Given the settings, the local database to use, started if need be. Registered by the
# tooling with set_local_provider.
LocalProvider = Callable[[Settings], LocalDatabase]


@dataclass(frozen=True)
class Endpoints:
    pair: urls.EndpointPair
    local: LocalDatabase | None  # set when a local stand-in (the twin) serves for Neon
    # The variable each URL came from, for messages that tell the user what to fix.
    pooled_variable: str = "DATABASE_URL"
    direct_variable: str = "DATABASE_URL_DIRECT"

    @property
    def pooled(self) -> str:
        return self.pair.pooled

    @property
    def direct(self) -> str:
        return self.pair.direct

    def describe(self) -> list[str]:
        """Where the database is, a line per door, passwords masked."""
        if self.local:
            return self.local.describe()
        if self.pair.pooled == self.pair.direct:
            return [f"database URL {urls.mask(self.pair.direct)}"]
        return [
            f"direct URL {urls.mask(self.pair.direct)}",
            f"pooled URL {urls.mask(self.pair.pooled)}",
        ]


# Registered by the command-line entry points (the CLI, the alembic command): only they
# hand over the local twin. The app and API callers get their URLs from settings.
_provider: dict[str, LocalProvider | None] = {"local": None}


def set_local_provider(provider: LocalProvider | None) -> None:
    """Where URLs come from when none is configured, in local development (None: nowhere)."""
    _provider["local"] = provider


@contextmanager
def local_provider(provider: LocalProvider) -> Iterator[None]:
    """set_local_provider for the length of the block (the alembic command's run)."""
    before = _provider["local"]
    _provider["local"] = provider
    try:
        yield
    finally:
        _provider["local"] = before


def local_development(settings) -> str | None:
    """None when the local twin may stand in for Neon, else why not (for the message)."""
    if os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no"):
        return "this is CI (the CI variable is set)"
    if settings.app_env.strip().lower() not in ("development", "dev", "local"):
        return f"APP_ENV is {settings.app_env!r}"
    return None


WEAK_SSLMODES = ("disable", "allow", "prefer")


def refuse_plaintext_to_neon(pair: urls.EndpointPair) -> None:
    """Neon accepts only TLS, and a password must never cross a network in the clear:
    a Neon URL that lets libpq skip TLS is refused before any statement, in every
    command (migrate, downgrade, verify, the check, the app)."""
    if not pair.neon:
        return
    for name, url in (("DATABASE_URL", pair.pooled), ("DATABASE_URL_DIRECT", pair.direct)):
        mode = urls.query_value(url, "sslmode")
        if mode in WEAK_SSLMODES:
            raise ConfigError(
                f"{name} has sslmode={mode} for a Neon host ({urls.host_of(url)}): the "
                "connection could go unencrypted",
                f"use sslmode=require (or verify-full) in {name}",
            )


@lru_cache(maxsize=1)
def get_endpoints() -> Endpoints:
    settings = get_settings()
    pair = urls.resolve(
        settings.database_url.get_secret_value() if settings.database_url else None,
        settings.database_url_direct.get_secret_value() if settings.database_url_direct else None,
    )
    if pair is not None:
        refuse_plaintext_to_neon(pair)
        return Endpoints(
            pair=pair,
            local=None,
            pooled_variable="DATABASE_URL" if settings.database_url else "DATABASE_URL_DIRECT",
            direct_variable="DATABASE_URL_DIRECT"
            if settings.database_url_direct
            else "DATABASE_URL",
        )
    not_local = local_development(settings)
    if not_local:
        raise ConfigError(
            f"DATABASE_URL is not set, and {not_local}: the local twin is for local "
            "development only",
            "set DATABASE_URL (Neon's pooled connection string; in CI, check that the "
            "secret is set for this job)",
        )
    provider = _provider["local"]
    if provider is None:  # the app, API callers: only the command line hands over a twin
        raise ConfigError(
            "DATABASE_URL is not set, and only the command line starts or finds the local twin",
            "set DATABASE_URL (`neon-migrate db-up --env` prints the twin's), or run the app "
            "with `neon-migrate serve`",
        )
    twin = provider(settings)
    pair = urls.EndpointPair(
        pooled=twin.pooled_url, direct=twin.direct_url, neon=False, derived=None
    )
    where = f"the local server's {twin.state_file}"
    return Endpoints(pair=pair, local=twin, pooled_variable=where, direct_variable=where)
