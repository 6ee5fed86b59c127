"""init in a project that already has Alembic: the chain stays where it is, the harness's
env.py runs it, a second run changes nothing, and no command runs through an env.py that
is not the harness's. The full first hour, in a fresh virtualenv against a real server,
is in test_init.py."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from contextlib import chdir
from pathlib import Path

import pytest
from helpers import CLI, ROOT
from scratch_projects import (
    FASTAPI_BACKEND,
    FASTAPI_HEAD,
    FLASK_APP,
    fastapi_backend,
    snapshot,
    write,
)

from neon_migrate import project
from neon_migrate.commands.adopt import BACKUP, alembic_pins
from neon_migrate.commands.scaffold import template
from neon_migrate.commands.workflow import install_command, python_version

NEON_MIGRATE = str(Path(sys.executable).parent / "neon-migrate")  # cwd not on sys.path


def init(folder: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    env = env or {k: v for k, v in os.environ.items() if k != "ALEMBIC_CONFIG"}
    return subprocess.run([NEON_MIGRATE, "init"], cwd=folder, env=env, capture_output=True,
                          text=True, timeout=120)  # fmt: skip


def test_init_keeps_the_chain_and_a_second_run_changes_nothing(tmp_path):
    backend = fastapi_backend(tmp_path / "repo")
    first = init(backend)
    assert first.returncode == 0, first.stderr
    lines = first.stdout.splitlines()
    # Alembic runs the harness's env.py where the project's was; the old one is kept, named.
    env_py = backend / "app" / "alembic" / "env.py"
    assert env_py.read_text() == template("env.py")
    assert (env_py.parent / BACKUP).read_text() == FASTAPI_BACKEND["app/alembic/env.py"]
    assert any(line.startswith(f"init: moved app/alembic/env.py to {BACKUP} ") for line in lines)
    # One chain: no second migrations/ folder, no second alembic.ini; settings added only.
    assert not (backend / "migrations").exists()
    ini = (backend / "alembic.ini").read_text()
    assert ini.startswith(FASTAPI_BACKEND["alembic.ini"].split("\n[loggers]")[0])
    for setting in ("prepend_sys_path = .", "path_separator = os",
                    "target_metadata = app.models:SQLModel.metadata"):  # fmt: skip
        assert ini.count(setting) == 1, setting
    assert "script_location = app/alembic" in ini
    assert (
        f"init: kept the existing chain: 4 revision(s) in app/alembic/versions, head {FASTAPI_HEAD}"
        in lines
    )
    # What it cannot do, named: the old env.py's URL source and its extra configure() option.
    assert any("include_schemas" in line and line.startswith("init: by hand:") for line in lines)
    assert any("app.core.config" in line and "DATABASE_URL_DIRECT" in line for line in lines)
    assert any(line.startswith("init: kept .env.example (it exists): add the lines "
                               "`DATABASE_URL=`") for line in lines)  # fmt: skip
    # CI at the repository's root, run in backend/, on a Python the project supports.
    workflow = (tmp_path / "repo" / ".github" / "workflows" / "database.yml").read_text()
    assert not (backend / ".github").exists()
    assert "defaults:\n  run:\n    working-directory: backend\n" in workflow
    assert "path: backend/predeploy.json" in workflow
    assert workflow.count('python-version: "3.11"') == 3  # >=3.10 there, >=3.11 here
    assert "init: wrote ../.github/workflows/database.yml" in lines
    assert ".env\n" in (backend / ".gitignore").read_text()
    ignored = subprocess.run(["git", "check-ignore", "-q", ".env"], cwd=backend)
    assert ignored.returncode == 0

    before = snapshot(tmp_path / "repo")
    again = init(backend)
    assert again.returncode == 0, again.stderr
    assert snapshot(tmp_path / "repo") == before
    assert not re.search(r"^init: (wrote|moved|edited) ", again.stdout, re.MULTILINE), again.stdout
    assert "init: kept app/alembic/env.py (the harness's)" in again.stdout


COMMANDS = [["status"], ["history"], ["migrate"], ["check", "--json"], ["sql"], ["verify"],
            ["revision", "-m", "x"], ["downgrade", "-1"]]  # fmt: skip


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: c[0])
def test_no_command_runs_through_an_env_py_that_is_not_the_harnesses(command, tmp_path,
                                                                    harness_env):  # fmt: skip
    backend = fastapi_backend(tmp_path / "repo")
    env = {k: v for k, v in harness_env.items() if k != "ALEMBIC_CONFIG"}
    run = subprocess.run([*CLI, *command], cwd=backend, env=env, capture_output=True,
                         text=True, timeout=120)  # fmt: skip
    assert run.returncode == 2, run.stdout + run.stderr
    [line] = run.stderr.splitlines()
    assert line.startswith("error: app/alembic/env.py is not neon-migrate's env.py")
    assert "Fix: run `neon-migrate init`" in line and BACKUP in line
    if "--json" in command:
        assert '"exit_code": 2' in run.stdout
    assert list((backend / "app" / "alembic" / "versions").iterdir()) != []  # nothing written
    assert len(list((backend / "app" / "alembic" / "versions").glob("*.py"))) == 4


def test_a_kept_ini_without_prepend_sys_path_names_it(tmp_path):
    backend = fastapi_backend(tmp_path / "repo")
    assert init(backend).returncode == 0
    ini = backend / "alembic.ini"
    ini.write_text(ini.read_text().replace("prepend_sys_path = .\n", ""))
    env = {k: v for k, v in os.environ.items() if k != "ALEMBIC_CONFIG"}
    run = subprocess.run([NEON_MIGRATE, "sql"], cwd=backend, env=env, capture_output=True,
                         text=True, timeout=120)  # fmt: skip
    assert run.returncode == 2, run.stdout + run.stderr
    [line] = run.stderr.splitlines()
    assert "ModuleNotFoundError" in line
    assert "Fix: add `prepend_sys_path = .` to the [alembic] section of" in line


def test_init_recognises_flask_migrate_and_keeps_its_one_alembic_ini(tmp_path):
    app = write(tmp_path / "blog", FLASK_APP)
    first = init(app)
    assert first.returncode == 0, first.stderr
    assert not (app / "alembic.ini").exists()  # `flask db` reads migrations/alembic.ini only
    ini = (app / "migrations" / "alembic.ini").read_text()
    for setting in ("script_location = %(here)s", "prepend_sys_path = .",
                    "target_metadata = app.models:db.metadata"):  # fmt: skip
        assert ini.count(setting) == 1, setting
    assert (app / "migrations" / "env.py").read_text() == template("env.py")
    assert "current_app" in (app / "migrations" / BACKUP).read_text()
    out = first.stdout
    assert ("init: Flask-Migrate's layout (migrations/alembic.ini; current_app in "
            "migrations/env.py; Migrate( in app/extensions.py)") in out  # fmt: skip
    assert "init: edited migrations/alembic.ini: added script_location = %(here)s" in out
    assert "kept the existing chain: 1 revision(s) in migrations/versions" in out
    assert ("init: by hand: requirements.txt pins alembic==1.12.1, below the alembic>=1.16.5 "
            'neon-migrate needs') in out and 'pip install -U "alembic>=1.16.5"' in out  # fmt: skip
    workflow = (app / ".github" / "workflows" / "database.yml").read_text()
    assert workflow.count("run: python -m pip install -r requirements.txt") == 3
    assert "pip install ." not in workflow and "working-directory" not in workflow

    before = snapshot(app)
    again = init(app)
    assert snapshot(app) == before and again.returncode == 0
    assert not re.search(r"^init: (wrote|moved|edited) ", again.stdout, re.MULTILINE)
    # Every harness command reads that same file, and finds the harness's env.py through it.
    with chdir(app):
        ini_file, toml_file = project.config_files()
        assert ini_file == project.FLASK_MIGRATE_INI
        assert project.env_py(ini_file, toml_file) == _alembic_env_py(ini_file, toml_file)
        project.require_harness_env()
        assert project.root(project.alembic_config()) == app.resolve()  # not migrations/


def _alembic_env_py(ini: Path | None, toml: Path | None) -> Path:
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    config = Config(file_=ini, toml_file=toml)
    return Path(ScriptDirectory.from_config(config).env_py_location)


LAYOUTS = {
    "ini, relative": {"alembic.ini": "[alembic]\nscript_location = db\n"},
    "ini, %(here)s": {"alembic.ini": "[alembic]\nscript_location = %(here)s/db\n"},
    "pyproject": {"pyproject.toml": '[tool.alembic]\nscript_location = "%(here)s/db"\n'},
    "ini wins over pyproject": {
        "alembic.ini": "[alembic]\nscript_location = db\n",
        "pyproject.toml": '[tool.alembic]\nscript_location = "elsewhere"\n',
    },
    "ini for logging, pyproject for Alembic": {
        "alembic.ini": "[loggers]\nkeys = root\n",
        "pyproject.toml": '[tool.alembic]\nscript_location = "db"\n',
    },
}


@pytest.mark.parametrize("files", LAYOUTS.values(), ids=LAYOUTS.keys())
def test_the_env_py_checked_is_the_one_alembic_runs(files, tmp_path):
    write(tmp_path, {**files, "db/env.py": "", "elsewhere/env.py": ""})
    with chdir(tmp_path):
        ini, toml = project.config_files()
        assert project.env_py(ini, toml).absolute() == _alembic_env_py(ini, toml).absolute()


def test_an_env_py_is_the_harnesses_when_it_imports_the_harness(tmp_path):
    env = tmp_path / "env.py"
    env.write_text(template("env.py") + "\n# our own lines\n")
    assert project.is_harness_env(env)
    env.write_text("import neon_migrate.migrate.environment\n")
    assert project.is_harness_env(env)
    env.write_text(FLASK_APP["migrations/env.py"])
    assert not project.is_harness_env(env)
    env.write_text("# from neon_migrate.migrate import offline\nimport neon_migrate\n")
    assert not project.is_harness_env(env)


@pytest.mark.parametrize(
    ("line", "flagged"),
    [("alembic==1.12.1", True), ("alembic>=1.10,<1.13", True), ("alembic~=1.12.0", True),
     ("alembic>=1.10", False), ("alembic~=1.16", False), ("alembic", False),
     ("alembic==1.16.2", False), ("alembicx==1.0", False)],
)  # fmt: skip
def test_an_alembic_pin_below_the_harnesses_is_named(line, flagged, tmp_path):
    (tmp_path / "requirements.txt").write_text(f"flask\n{line}  # pinned\n")
    assert bool(alembic_pins(tmp_path, "1.16")) is flagged
    (tmp_path / "requirements.txt").unlink()
    (tmp_path / "pyproject.toml").write_text(f'[project]\nname = "x"\ndependencies = ["{line}"]\n')
    assert bool(alembic_pins(tmp_path, "1.16")) is flagged


def test_the_harnesses_alembic_minimum_is_its_dependency():
    from neon_migrate.commands.scaffold import ALEMBIC_MINIMUM

    assert f'"alembic>={ALEMBIC_MINIMUM}"' in (ROOT / "pyproject.toml").read_text()


def test_the_workflow_python_and_install_fit_the_project(tmp_path):
    todo: list[str] = []
    assert install_command(tmp_path, todo) == "python -m pip install ."
    assert "nothing says how to install the project" in todo[0]
    (tmp_path / "requirements.txt").write_text("neon-migrate[check]\n")
    todo = []
    assert install_command(tmp_path, todo) == "python -m pip install -r requirements.txt"
    assert todo == []
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "x"\nrequires-python = ">=3.12"\n')
    assert install_command(tmp_path, todo) == "python -m pip install ."
    assert python_version(tmp_path, tmp_path, todo) == "3.12"
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "x"\nrequires-python = "<3.10"\n')
    running = f"{sys.version_info.major}.{sys.version_info.minor}"
    assert python_version(tmp_path, tmp_path, todo) == running
    assert "excludes every Python neon-migrate supports" in todo[-1]
    (tmp_path / ".python-version").write_text("3.13.1\n")
    assert python_version(tmp_path, tmp_path, todo) == "3.13"


def test_the_readmes_adoption_output_is_what_init_prints(tmp_path):
    """README's "Adding it to an existing Alembic project" shows init on this very project."""
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Adding it to an existing Alembic project\n")[1].split("\n## ")[0]
    shown = [line for line in section.splitlines() if line.startswith("init: ")]
    run = init(fastapi_backend(tmp_path / "repo"))
    assert run.returncode == 0, run.stderr
    assert shown == run.stdout.splitlines()
    [refused] = [line for line in section.splitlines() if line.startswith("error: ")]
    before = subprocess.run([NEON_MIGRATE, "check"], cwd=fastapi_backend(tmp_path / "other"),
                            env=dict(os.environ, ALEMBIC_CONFIG=""), capture_output=True,
                            text=True, timeout=120)  # fmt: skip
    assert before.returncode == 2 and before.stderr.strip() == refused


def test_two_configurations_beside_flask_migrates_are_named(tmp_path):
    """A root alembic.ini beside migrations/alembic.ini: `flask db` and the harness would
    read different files; init says which to keep and deletes neither."""
    app = write(tmp_path / "blog", FLASK_APP)
    (app / "alembic.ini").write_text("[alembic]\nscript_location = %(here)s/migrations\n")
    run = init(app)
    assert run.returncode == 0, run.stderr
    named = "init: by hand: two Alembic configurations: alembic.ini (read by alembic and "
    assert named + "neon-migrate) and migrations/alembic.ini (read by `flask db`)" in run.stdout
    assert (app / "alembic.ini").is_file() and (app / "migrations" / "alembic.ini").is_file()


def test_a_url_in_alembic_ini_is_named_never_shown(tmp_path):
    backend = fastapi_backend(tmp_path / "repo")
    ini = backend / "alembic.ini"
    url = "postgresql+psycopg://app:s3cr3t-pw@db.internal/app"
    ini.write_text(ini.read_text().replace("[alembic]\n", f"[alembic]\nsqlalchemy.url = {url}\n"))
    run = init(backend)
    assert run.returncode == 0, run.stderr
    assert "init: by hand: alembic.ini sets sqlalchemy.url, which the harness does not read" in (
        run.stdout
    )
    assert "s3cr3t" not in run.stdout + run.stderr
