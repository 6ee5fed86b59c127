"""Which two URLs this process uses: from settings, or the embedded local server.

Resolved once per process. When neither DATABASE_URL nor DATABASE_URL_DIRECT is set, the
embedded local PostgreSQL is started (or reused) so `make migrate` works on a fresh clone.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from app.db import urls
from app.db.local import LocalServer, LocalServerInfo
from app.settings import get_settings


@dataclass(frozen=True)
class Endpoints:
    pair: urls.EndpointPair
    local: LocalServerInfo | None  # set when the embedded server stands in for Neon
    # The variable each URL came from, for messages that tell the user what to fix.
    pooled_variable: str = "DATABASE_URL"
    direct_variable: str = "DATABASE_URL_DIRECT"

    @property
    def pooled(self) -> str:
        return self.pair.pooled

    @property
    def direct(self) -> str:
        return self.pair.direct

    def describe(self) -> str:
        """One line saying where the database is, password masked."""
        if self.local:
            state = "started" if self.local.started else "already running"
            return (
                f"embedded local PostgreSQL {self.local.version} at "
                f"{self.local.host}:{self.local.port} ({state}; data in {self.local.data_dir})"
            )
        if self.pair.pooled == self.pair.direct:
            return f"database {urls.mask(self.pair.direct)}"
        return f"direct {urls.mask(self.pair.direct)}; pooled {urls.mask(self.pair.pooled)}"


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
    root = settings.local_db_dir / "pg"
    info = LocalServer(root).start()
    pair = urls.EndpointPair(pooled=info.url, direct=info.url, neon=False, derived=None)
    where = f"the embedded server's {root / 'server.json'}"
    return Endpoints(pair=pair, local=info, pooled_variable=where, direct_variable=where)
