"""A new team's first hour: an existing FastAPI + SQLModel project with its own `app/`
package installs the library into a fresh virtualenv, runs `neon-migrate init`, writes a
model, and autogenerates, migrates, checks and reads the status."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import ROOT, rows

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


@pytest.fixture(scope="module")
def fresh_venv(tmp_path_factory) -> Path:
    """The library as a user installs it: a new virtualenv, `pip install <repo>[local,check]`."""
    venv = tmp_path_factory.mktemp("venv") / "v"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    subprocess.run(
        [str(venv / "bin" / "pip"), "install", "--quiet", "--disable-pip-version-check",
         f"{ROOT}[local,check]", "fastapi"],
        check=True, timeout=600,
    )  # fmt: skip
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
    assert "init: kept alembic.ini (it exists)" in again.stdout
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
