"""Which two URLs this process uses: from settings, or the local twin of Neon.

Resolved once per process. When neither DATABASE_URL nor DATABASE_URL_DIRECT is set, the
local twin (PostgreSQL + PgBouncer) is started or reused so `make migrate` works on a fresh clone.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING

from neon_migrate.connection import urls
from neon_migrate.errors import ConfigError
from neon_migrate.settings import get_settings

if TYPE_CHECKING:
    from neon_migrate.twin.lifecycle import LocalTwin


@dataclass(frozen=True)
class Endpoints:
    pair: urls.EndpointPair
    local: LocalTwin | None  # set when the local twin stands in for Neon
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


# Set by the command-line entry points (the CLI, the alembic command): only they may start
# the local twin. The app, API callers and tests reuse a running one, or get an error.
_may_start = {"twin": False}


def allow_starting_the_twin() -> None:
    _may_start["twin"] = True


@contextmanager
def twin_may_start() -> Iterator[None]:
    """allow_starting_the_twin for the length of the block (the alembic command's run)."""
    before = _may_start["twin"]
    _may_start["twin"] = True
    try:
        yield
    finally:
        _may_start["twin"] = before


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
    from neon_migrate.twin.lifecycle import (  # the local servers' code, when used
        running_twin,
        start_twin,
    )

    if _may_start["twin"]:
        twin = start_twin(settings.local_db_dir, settings.local_pg_bin_dir)
    else:
        twin = running_twin(settings.local_db_dir, settings.local_pg_bin_dir)
    if twin is None:
        raise ConfigError(
            "DATABASE_URL is not set and no local twin is running",
            "set DATABASE_URL, or start the local twin with `make db-up`",
        )
    pair = urls.EndpointPair(
        pooled=twin.pooled_url, direct=twin.direct_url, neon=False, derived=None
    )
    where = f"the local server's {twin.state_file}"
    return Endpoints(pair=pair, local=twin, pooled_variable=where, direct_variable=where)
