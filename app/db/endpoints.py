"""Which two URLs this process uses: from settings, or the local twin of Neon.

Resolved once per process. When neither DATABASE_URL nor DATABASE_URL_DIRECT is set, the
local twin (PostgreSQL + PgBouncer) is started or reused so `make migrate` works on a fresh clone.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING

from app.db import urls
from app.settings import get_settings

if TYPE_CHECKING:
    from app.db.twin import LocalTwin


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


@lru_cache(maxsize=1)
def get_endpoints() -> Endpoints:
    settings = get_settings()
    pair = urls.resolve(
        settings.database_url.get_secret_value() if settings.database_url else None,
        settings.database_url_direct.get_secret_value() if settings.database_url_direct else None,
    )
    if pair is not None:
        return Endpoints(
            pair=pair,
            local=None,
            pooled_variable="DATABASE_URL" if settings.database_url else "DATABASE_URL_DIRECT",
            direct_variable="DATABASE_URL_DIRECT"
            if settings.database_url_direct
            else "DATABASE_URL",
        )
    from app.db.twin import start_twin  # the local servers' code, only when they are used

    twin = start_twin(settings.local_db_dir, settings.local_pg_bin_dir)
    pair = urls.EndpointPair(
        pooled=twin.pooled_url, direct=twin.direct_url, neon=False, derived=None
    )
    where = f"the local server's {twin.state_file}"
    return Endpoints(pair=pair, local=twin, pooled_variable=where, direct_variable=where)
