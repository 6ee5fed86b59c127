"""Start-up: commands import only what they use, and the quick heads reader agrees with
Alembic or steps aside. Checked by what is imported, not by timing."""

from __future__ import annotations

import subprocess
import sys

from alembic.config import Config
from alembic.script import ScriptDirectory
from helpers import ROOT, add_revision, alembic

from neon_migrate.migrate.heads import quick_heads

HEAVY = ("sqlalchemy", "alembic", "sqlmodel", "cryptography", "app.models")


def imported(args: list[str], env: dict) -> set[str]:
    """The heavy packages a command imports (top-level names), from -X importtime."""
    result = subprocess.run(
        [sys.executable, "-X", "importtime", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    names = {line.rsplit("|", 1)[-1].strip() for line in result.stderr.splitlines()}
    return {name for name in names if name in HEAVY}


def test_help_imports_nothing_heavy(harness_env):
    assert imported(["-m", "neon_migrate.cli", "--help"], harness_env) == set()


def test_migrate_at_head_needs_neither_sqlalchemy_nor_alembic(harness_env):
    assert alembic("upgrade", "head", env=harness_env).returncode == 0
    assert imported(["-m", "neon_migrate.cli", "migrate"], harness_env) == set()


def alembic_heads(config_file) -> tuple[str, ...]:
    return tuple(sorted(ScriptDirectory.from_config(Config(str(config_file))).get_heads()))


def test_quick_heads_agree_with_alembic(project):
    assert quick_heads(ROOT / "alembic.ini") == alembic_heads(ROOT / "alembic.ini")
    ini = project["root"] / "alembic.ini"
    add_revision(project, "b1", "f096d6eff8ee", "SELECT 1")
    add_revision(project, "b2", "f096d6eff8ee", "SELECT 1")
    add_revision(project, "m1", "PLACEHOLDER", "SELECT 1").write_text(
        (project["root"] / "migrations" / "versions" / "m1.py")
        .read_text()
        .replace("'PLACEHOLDER'", "('b1', 'b2')")
        .replace('"PLACEHOLDER"', "('b1', 'b2')")
    )
    add_revision(project, "b3", "f096d6eff8ee", "SELECT 1")
    assert quick_heads(ini) == alembic_heads(ini) == ("b3", "m1")


def test_quick_heads_ignore_a_versions_package_file(project):
    """Real projects keep a versions/__init__.py; Alembic ignores it, and so do we."""
    ini = project["root"] / "alembic.ini"
    (project["root"] / "migrations" / "versions" / "__init__.py").write_text("")
    assert quick_heads(ini) == alembic_heads(ini) == ("f096d6eff8ee",)


def test_quick_heads_step_aside_when_unsure(project):
    ini = project["root"] / "alembic.ini"
    path = add_revision(project, "dyn", "f096d6eff8ee", "SELECT 1")
    path.write_text(path.read_text().replace('revision = "dyn"', 'revision = "d" + "yn"'))
    assert quick_heads(ini) is None
    path.unlink()
    ini.write_text(ini.read_text().replace("[alembic]", "[alembic]\nversion_locations = x y"))
    assert quick_heads(ini) is None


def test_quick_heads_step_aside_for_sourceless_revisions(project):
    ini = project["root"] / "alembic.ini"
    ini.write_text(ini.read_text().replace("[alembic]", "[alembic]\nsourceless = true"))
    assert quick_heads(ini) is None


def test_read_only_commands_do_not_load_the_models(harness_env):
    """The models shape DDL (their naming convention); `alembic current` sends none."""
    assert alembic("upgrade", "head", env=harness_env).returncode == 0
    loaded = imported(["-m", "alembic", "current"], harness_env)
    assert "app.models" not in loaded and "sqlmodel" not in loaded
