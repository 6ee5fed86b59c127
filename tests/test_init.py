"""A new team's first hour: an existing FastAPI + SQLModel project with its own `app/`
package installs the library into a fresh virtualenv, runs `neon-migrate init`, writes a
model, and autogenerates, migrates, checks and reads the status."""

from __future__ import annotations

import fcntl
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import ROOT, rows
from scratch_projects import FASTAPI_HEAD, FASTAPI_REVISIONS, fastapi_backend, snapshot, write
from sqlalchemy.engine import make_url

from neon_migrate.commands.scaffold import FILES, alembic_ini, guess_models, template

MODELS = """\
from sqlmodel import Field, SQLModel


class Customer(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    name: str
    email: str = Field(max_length=320, unique=True)
    note: str | None = None
"""

MAIN = """\
from fastapi import FastAPI

app = FastAPI()


@app.get("/")
def index() -> dict:
    return {"hello": "world"}
"""


def test_this_repository_uses_the_files_init_writes():
    """One source: the templates are what this project runs (links, an include, and the
    ini rendered with this project's models)."""
    assert (ROOT / "migrations" / "env.py").read_text() == template("env.py")
    assert (ROOT / "migrations" / "script.py.mako").read_text() == template("script.py.mako")
    assert (ROOT / ".env.example").read_text() == template("env.example")
    assert (ROOT / "alembic.ini").read_text() == alembic_ini("app.models:metadata")
    assert "include neon_migrate/templates/neon-migrate.mk" in (ROOT / "Makefile").read_text()


def test_models_are_found_where_projects_keep_them(tmp_path):
    (tmp_path / "app").mkdir()
    (tmp_path / "app" / "models.py").write_text(MODELS)
    assert guess_models(tmp_path) == "app.models:SQLModel.metadata"
    (tmp_path / "app" / "models.py").write_text("from x import Base\nmetadata = Base.metadata\n")
    assert guess_models(tmp_path) == "app.models:metadata"
    empty = tmp_path / "empty"
    empty.mkdir()
    assert guess_models(empty) is None


@pytest.fixture(scope="session")
def fresh_venv(request, tmp_path_factory) -> Path:
    """The library as a user installs it: a new virtualenv, `pip install <repo>[local,check]`
    (and psycopg 3 and pytest, which the adopted project's own engine, stock env.py and
    tests use).

    Built once per run and shared by xdist's workers (a lock in the run's folder): the
    install is the suite's costliest setup. The virtualenv gets no pip of its own: this
    environment's pip installs into it (--python), as the library's install is under test,
    not pip's. No bytecode is compiled at install (a third of its time, for thousands of
    modules no test imports): the first command to import a module writes its bytecode,
    which the suite lets it do (PYTHONDONTWRITEBYTECODE is cleared)."""
    base = tmp_path_factory.getbasetemp()
    shared = base.parent if hasattr(request.config, "workerinput") else base
    venv = shared / "fresh-venv"
    with open(shared / "fresh-venv.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (venv / "pip-seconds").exists():
            shutil.rmtree(venv, ignore_errors=True)  # a build that failed part way
            started = time.perf_counter()
            subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
            subprocess.run(
                [sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python"), "install",
                 "--quiet", "--disable-pip-version-check", "--no-compile",
                 f"{ROOT}[local,check]", "fastapi", "psycopg[binary]", "pytest"],
                check=True, timeout=600,
            )  # fmt: skip
            (venv / "pip-seconds").write_text(f"{time.perf_counter() - started:.1f}")
    return venv / "bin"


def _run(bin_dir: Path, args: list[str], cwd: Path, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run([str(bin_dir / "neon-migrate"), *args], cwd=cwd, env=env, text=True,
                          capture_output=True, timeout=300)  # fmt: skip


@pytest.mark.slow
def test_init_in_an_existing_fastapi_sqlmodel_project(fresh_venv, tmp_path, harness_env, db_url):
    project = tmp_path / "invoicer"
    (project / "app").mkdir(parents=True)
    (project / "app" / "__init__.py").write_text("")
    (project / "app" / "main.py").write_text(MAIN)
    (project / "app" / "models.py").write_text(MODELS)
    (project / "Makefile").write_text("run:\n\tuvicorn app.main:app\n")
    env = {k: v for k, v in harness_env.items() if k != "ALEMBIC_CONFIG"}

    first = _run(fresh_venv, ["init"], project, env)
    assert first.returncode == 0, first.stderr
    for destination in FILES.values():
        assert f"init: wrote {destination}" in first.stdout
        assert (project / destination).is_file()
    assert "add the line `include neon-migrate.mk`" in first.stdout  # their Makefile is kept
    assert (project / "Makefile").read_text() == "run:\n\tuvicorn app.main:app\n"
    assert "app.models:SQLModel.metadata" in (project / "alembic.ini").read_text()

    (project / "alembic.ini").write_text((project / "alembic.ini").read_text() + "# ours\n")
    again = _run(fresh_venv, ["init"], project, env)
    assert again.returncode == 0 and "init: wrote" not in again.stdout
    assert "init: kept alembic.ini (it has every setting the harness needs)" in again.stdout
    assert "init: kept migrations/env.py (the harness's)" in again.stdout
    assert (project / "alembic.ini").read_text().endswith("# ours\n")  # never overwritten

    revision = _run(fresh_venv, ["revision", "-m", "create customers"], project, env)
    assert revision.returncode == 0, revision.stdout + revision.stderr
    [written] = (project / "migrations" / "versions").glob("*_create_customers.py")
    assert "sqlmodel" not in written.read_text()  # rendered as sa.String: imports what it uses

    migrate = _run(fresh_venv, ["migrate"], project, env)
    assert migrate.returncode == 0, migrate.stdout + migrate.stderr
    assert "applied 1 revision(s)" in migrate.stdout
    assert rows(db_url, "SELECT count(*) FROM customer") == [(0,)]

    check = _run(fresh_venv, ["check", "--json"], project, env)
    assert check.returncode == 0, check.stdout + check.stderr
    assert json.loads(check.stdout)["ok"] is True

    status = _run(fresh_venv, ["status", "--json"], project, env)
    assert status.returncode == 0, status.stdout + status.stderr
    [entry] = json.loads(status.stdout)["revisions"]
    assert entry["state"] == "applied" and entry["checksum"] == "ok"


def test_init_where_it_cannot_write_is_one_line(tmp_path, harness_env):
    (tmp_path / "migrations").write_text("a file in the way")
    run = subprocess.run([sys.executable, "-m", "neon_migrate.cli", "init", str(tmp_path)],
                         env=harness_env, capture_output=True, text=True, timeout=60)  # fmt: skip
    assert run.returncode == 2, run.stderr
    assert run.stderr.startswith("error: cannot write into") and "Traceback" not in run.stderr


def test_init_keeps_alembic_configured_in_pyproject(tmp_path, harness_env):
    (tmp_path / "pyproject.toml").write_text('[tool.alembic]\nscript_location = "%(here)s/db"\n')
    run = subprocess.run([sys.executable, "-m", "neon_migrate.cli", "init", str(tmp_path)],
                         env=harness_env, capture_output=True, text=True, timeout=60)  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert not (tmp_path / "alembic.ini").exists()
    assert (tmp_path / "db" / "env.py").read_text() == template("env.py")
    assert "[tool.neon-migrate]" in run.stdout


def _json(run: subprocess.CompletedProcess) -> dict:
    assert run.stdout.strip(), run.stderr
    return json.loads(run.stdout)


@pytest.fixture
def default_twin(harness_env, tmp_path) -> dict[str, str]:
    """The environment of a developer with no URL set: commands use the default twin (the
    bundled PostgreSQL 17 with uuid-ossp, the twin's PgBouncer), whatever server this test
    run uses; stopped afterwards."""
    env = {k: v for k, v in harness_env.items()
           if k not in ("ALEMBIC_CONFIG", "DATABASE_URL", "LOCAL_PG_BIN_DIR")}  # fmt: skip
    env["LOCAL_DB_DIR"] = str(tmp_path / "twin")
    yield env
    subprocess.run([sys.executable, "-m", "neon_migrate.cli", "db-down"], env=env,
                   capture_output=True, timeout=120)  # fmt: skip


@pytest.mark.slow
def test_adopting_an_existing_fastapi_alembic_project(fresh_venv, tmp_path, default_twin,
                                                      capsys):  # fmt: skip
    """The first hour on a project with its own chain (app/alembic/versions, uuid-ossp),
    psycopg 3 engine, settings class and stock env.py, on the default twin: init keeps the
    chain and changes nothing the second time; every revision is listed, applied, checked;
    a new revision continues the old chain in the old folder; the project's own tests pass
    through the twin's pooled door with psycopg 3's defaults (prepared statements)."""
    backend = fastapi_backend(tmp_path / "repo")
    env = default_twin
    started = time.perf_counter()
    first = _run(fresh_venv, ["init"], backend, env)
    assert first.returncode == 0, first.stderr
    files = snapshot(tmp_path / "repo")
    again = _run(fresh_venv, ["init"], backend, env)
    assert again.returncode == 0 and snapshot(tmp_path / "repo") == files, again.stdout

    status = _run(fresh_venv, ["status", "--json"], backend, env)
    assert status.returncode == 0, status.stdout + status.stderr
    listed = _json(status)["revisions"]
    assert [(e["revision"], e["state"]) for e in listed] == [
        (r, "pending") for r in FASTAPI_REVISIONS
    ]
    migrate = _run(fresh_venv, ["migrate"], backend, env)
    to_first_migrate = time.perf_counter() - started
    assert migrate.returncode == 0, migrate.stdout + migrate.stderr
    assert "applied 4 revision(s)" in migrate.stdout and FASTAPI_HEAD in migrate.stdout
    up = _run(fresh_venv, ["db-up", "--env"], backend, env)
    assert up.returncode == 0, up.stdout + up.stderr
    urls = dict(line.removeprefix("export ").split("=", 1) for line in up.stdout.splitlines()
                if line.startswith("export "))  # fmt: skip
    direct = make_url(urls["DATABASE_URL_DIRECT"].strip("'"))
    pooled = make_url(urls["DATABASE_URL"].strip("'"))
    assert rows(direct.render_as_string(hide_password=False),
                "SELECT version_num, current_setting('server_version_num')::int / 10000 "
                "FROM alembic_version") == [(FASTAPI_HEAD, 17)]  # fmt: skip

    check = _run(fresh_venv, ["check", "--json"], backend, env)
    assert check.returncode == 0, check.stdout + check.stderr
    assert _json(check)["ok"] is True
    assert "head unknown" not in check.stdout + check.stderr

    models = backend / "app" / "models.py"
    models.write_text(models.read_text() + "    priority: int | None = Field(default=None)\n")
    versions = backend / "app" / "alembic" / "versions"
    revision = _run(fresh_venv, ["revision", "-m", "item priority"], backend, env)
    assert revision.returncode == 0, revision.stdout + revision.stderr
    [written] = versions.glob("*_item_priority.py")
    source = written.read_text()
    assert f"down_revision = {FASTAPI_HEAD!r}" in source.replace('"', "'")
    assert "add_column('item'" in source.replace('"', "'") and "priority" in source
    assert not (backend / "migrations").exists()
    second = _run(fresh_venv, ["migrate"], backend, env)
    assert second.returncode == 0, second.stdout + second.stderr
    assert "applied 1 revision(s)" in second.stdout

    # The project's own tests, its own settings pointed at the twin's pooled door.
    assert "prepared statements passed" in up.stdout + up.stderr, up.stdout + up.stderr
    own = dict(env, POSTGRES_SERVER=pooled.host, POSTGRES_PORT=str(pooled.port),
               POSTGRES_USER=pooled.username, POSTGRES_PASSWORD=pooled.password,
               POSTGRES_DB=pooled.database, PYTHONPATH=str(backend))  # fmt: skip
    tests = subprocess.run([str(fresh_venv / "python"), "-m", "pytest", "-q", "-p",
                            "no:cacheprovider", "app/tests"], cwd=backend, env=own,
                           capture_output=True, text=True, timeout=300)  # fmt: skip
    assert tests.returncode == 0, tests.stdout + tests.stderr
    assert "1 passed" in tests.stdout

    # README's "Wiring an existing FastAPI app" on this project: the route now takes the
    # harness's SessionDep on its engine, with the twin's URLs as `db-up --env` gives them.
    readme = (ROOT / "README.md").read_text().split("### Wiring an existing FastAPI app\n")[1]
    deps = readme.split("```python\n", 1)[1].split("```", 1)[0]
    assert deps.startswith("# app/api/deps.py")
    write(backend, {"app/api/__init__.py": "", "app/api/deps.py": deps})
    main = backend / "app" / "main.py"
    swap = {"from app.core.db import get_db": "from app.api.deps import SessionDep",
            "session: Session = Depends(get_db)": "session: SessionDep"}  # fmt: skip
    text = main.read_text()
    for before, after in swap.items():
        text = text.replace(before, after)
    main.write_text(text)
    assert "SessionDep" in main.read_text() and "get_db" not in main.read_text()
    program = ("from fastapi.testclient import TestClient\nfrom app.main import app\n"
               "answer = TestClient(app).get('/items')\n"
               "print(answer.status_code, [i['title'] for i in answer.json()])\n")  # fmt: skip
    wired = dict(env, PYTHONPATH=str(backend), DATABASE_URL=urls["DATABASE_URL"].strip("'"),
                 DATABASE_URL_DIRECT=urls["DATABASE_URL_DIRECT"].strip("'"))  # fmt: skip
    served = subprocess.run([str(fresh_venv / "python"), "-c", program], cwd=backend, env=wired,
                            capture_output=True, text=True, timeout=120)  # fmt: skip
    assert served.returncode == 0, served.stdout + served.stderr
    assert served.stdout.strip() == "200 ['first']", served.stdout + served.stderr
    install = (fresh_venv.parent / "pip-seconds").read_text()
    with capsys.disabled():
        print(
            f"\nadoption: pip install {install} s, init to first "
            f"migrate {to_first_migrate:.1f} s; init wrote/kept/edited:\n{first.stdout}"
        )


@pytest.mark.slow
def test_a_database_first_migrated_by_stock_alembic(fresh_venv, tmp_path, harness_env, db_url):
    """Before adoption the project's own env.py applied part of the chain (no history
    table): after init, status lists those revisions as applied without a record and
    migrate continues from there."""
    backend = fastapi_backend(tmp_path / "repo")
    url = make_url(db_url)
    env = {k: v for k, v in harness_env.items() if k != "ALEMBIC_CONFIG"}
    stock_env = dict(env, PYTHONPATH=str(backend), POSTGRES_SERVER=url.host,
                     POSTGRES_PORT=str(url.port), POSTGRES_USER=url.username,
                     POSTGRES_PASSWORD=url.password, POSTGRES_DB=url.database)  # fmt: skip
    stock = subprocess.run([str(fresh_venv / "alembic"), "upgrade", FASTAPI_REVISIONS[2]],
                           cwd=backend, env=stock_env, capture_output=True, text=True,
                           timeout=300)  # fmt: skip
    assert stock.returncode == 0, stock.stdout + stock.stderr
    assert _run(fresh_venv, ["init"], backend, env).returncode == 0

    status = _run(fresh_venv, ["status", "--json"], backend, env)
    assert status.returncode == 0, status.stdout + status.stderr
    listed = {e["revision"]: e for e in _json(status)["revisions"]}
    for revision in FASTAPI_REVISIONS[:3]:
        assert listed[revision]["state"] == "applied", listed[revision]
        assert listed[revision]["checksum"] == "no record" and not listed[revision]["applied_at"]
    assert listed[FASTAPI_HEAD]["state"] == "pending"
    migrate = _run(fresh_venv, ["migrate"], backend, env)
    assert migrate.returncode == 0, migrate.stdout + migrate.stderr
    assert "applied 1 revision(s)" in migrate.stdout
    assert rows(db_url, "SELECT version_num FROM alembic_version") == [(FASTAPI_HEAD,)]
