"""The README's code runs: every Python block is linted with the project's own ruff
rules and executed (a revision as a revision, the rest as a program against a real
database), every console command names a command, flag or target that exists, and every
TOML block parses into options the harness reads."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
import tomllib

import pytest
from helpers import ROOT, alembic

from neon_migrate.cli import parser

README = (ROOT / "README.md").read_text()
BLOCK = re.compile(r"^```(\w*)\n(.*?)^```", re.MULTILINE | re.DOTALL)


def blocks(language: str) -> list[str]:
    return [body for lang, body in BLOCK.findall(README) if lang == language]


PYTHON = blocks("python")


def _id(body: str) -> str:
    return body.strip().splitlines()[0][:60]


def test_the_readme_has_code_to_check():
    assert len(PYTHON) >= 6 and blocks("console") and blocks("toml")


@pytest.mark.parametrize("body", PYTHON, ids=_id)
def test_python_blocks_pass_the_projects_lint(body, tmp_path):
    path = tmp_path / "snippet.py"
    path.write_text(body)
    result = subprocess.run(
        [sys.executable, "-m", "ruff", "check", "--no-cache", "--config",
         str(ROOT / "pyproject.toml"), "--extend-ignore", "I001,E402", str(path)],
        capture_output=True, text=True,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout  # F821: a missing import; B008: Depends


@pytest.mark.parametrize("body", PYTHON, ids=_id)
def test_python_blocks_run(body, project):
    """A block with upgrade() runs as a revision (and its downgrade); any other block runs
    as a program, in the project, against a database migrated to head."""
    env = dict(project["env"], PYTHONPATH=str(project["root"]))
    assert alembic("upgrade", "head", env=env).returncode == 0
    if "def upgrade" in body:
        versions = project["root"] / "migrations" / "versions"
        head = alembic("heads", env=env).stdout.split()[0]
        (versions / "readme.py").write_text(
            f'revision = "readme"\ndown_revision = "{head}"\n' + body
        )
        up = alembic("upgrade", "head", env=env)
        assert up.returncode == 0, up.stdout
        down = alembic("downgrade", "-1", env=env)
        assert down.returncode == 0, down.stdout
        return
    result = subprocess.run([sys.executable, "-c", body], env=env, cwd=project["root"],
                            capture_output=True, text=True, timeout=60)  # fmt: skip
    assert result.returncode == 0, result.stderr


def _commands(line: str) -> list[str]:
    return [part.strip() for part in re.split(r"\s(?:&&|\|)\s", line.split("  #")[0])]


CONSOLE = [
    command
    for body in blocks("console")
    for line in body.splitlines()
    if line.startswith("$ ")
    for command in _commands(line[2:])
]


def make_targets() -> set[str]:
    result = subprocess.run(["make", "-s", "help"], cwd=ROOT, capture_output=True, text=True)
    return {line.split()[1] for line in result.stdout.splitlines() if line.startswith("  make")}


@pytest.mark.parametrize("command", CONSOLE)
def test_console_commands_exist(command):
    words = shlex.split(command)
    program, args = words[0], words[1:]
    if program == "neon-migrate":
        parser().parse_args(args)  # argparse exits 2 on an unknown command or flag
    elif program == "make":
        target = next(word for word in args if "=" not in word)
        assert target in make_targets()
    elif program == "pip":
        extras = re.findall(r"\[([\w,]+)\]", command)
        declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
        for extra in ",".join(extras).split(","):
            assert not extra or extra in declared["optional-dependencies"], extra
    elif program == "flask":  # Flask-Migrate's commands (tests/test_frontends.py runs them)
        from flask_migrate.cli import db

        assert args[0] == "db" and args[1] in db.commands, args
    elif program in ("curl", "psql"):  # the routes and the SQL are tested on their own
        pass
    else:
        pytest.fail(f"the README runs {program!r}; teach this test what it is")


@pytest.mark.parametrize("body", blocks("toml"), ids=_id)
def test_toml_blocks_name_options_the_harness_reads(body):
    """A TOML block is pyproject.toml's table for the harness, or a fleet's targets file."""
    document = tomllib.loads(body)
    if "tool" not in document:
        from neon_migrate.fleet.targets import parse

        assert parse(body, ROOT / "fleet.toml").targets or "neon" in document
        return
    options = document["tool"]["neon-migrate"]
    asked = {"target_metadata", "app", "version_table", "version_table_schema"}
    assert set(options) <= asked  # what project.option() is asked for
