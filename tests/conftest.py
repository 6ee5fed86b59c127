"""Real PostgreSQL for every test: one server per session, a fresh database per test.

The server is the embedded one (started here, fsync off, in a temp folder) unless
TEST_DATABASE_URL points at another. pytest-postgresql's noproc fixture takes its address
from `pg_server` and clones a template database for each test.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import pytest
from helpers import ROOT
from pytest_postgresql import factories
from sqlalchemy.engine import make_url

from app.db.engines import reset_engines
from app.db.local import LocalServer

FAST_TEST_SERVER = {"fsync": "off", "synchronous_commit": "off", "full_page_writes": "off"}
URL_VARIABLES = ("DATABASE_URL", "DATABASE_URL_DIRECT", "DATABASE_URL_UNPOOLED")


@dataclass(frozen=True)
class PgBase:
    """What pytest-postgresql's noproc factory reads from the fixture it depends on."""

    host: str
    port: int
    user: str
    password: str
    dbname: str = "tests"
    options: str = ""
    maintenance_dbname: str = "postgres"
    template_dbname: str | None = None

    def url(self, dbname: str, password: str | None = None) -> str:
        secret = quote(self.password if password is None else password, safe="")
        return f"postgresql://{self.user}:{secret}@{self.host}:{self.port}/{dbname}"


@pytest.fixture(scope="session")
def pg_server(tmp_path_factory: pytest.TempPathFactory):
    given = os.environ.get("TEST_DATABASE_URL")
    if given:
        url = make_url(given)
        yield PgBase(url.host or "127.0.0.1", url.port or 5432, url.username, url.password or "")
        return
    server = LocalServer(tmp_path_factory.mktemp("pg"), server_options=FAST_TEST_SERVER)
    info = server.start()
    yield PgBase(info.host, info.port, info.user, info.password)
    server.stop()


postgresql_noproc = factories.postgresql_noproc(depends_on="pg_server")
postgresql = factories.postgresql("postgresql_noproc")


@pytest.fixture
def db_url(postgresql, pg_server: PgBase) -> str:
    """URL of this test's own empty database."""
    return pg_server.url(postgresql.info.dbname)


@pytest.fixture
def harness_env(db_url: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> dict[str, str]:
    """The process environment pointed at this test's database, caches reset around it.

    LOCAL_DB_DIR points at an empty folder so a test that wrongly falls back to the
    embedded server is visible (the folder appears) instead of touching a developer's.
    """
    for name in URL_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("DATABASE_URL", db_url)
    monkeypatch.setenv("LOCAL_DB_DIR", str(tmp_path / "unused-local"))
    monkeypatch.chdir(ROOT)
    reset_engines()
    yield dict(os.environ)
    reset_engines()
