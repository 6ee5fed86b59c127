"""One answer for the heads: the fast reader equals Alembic's ScriptDirectory in every
layout Alembic supports, or steps aside; and what the commands do with that answer, on a
real server (issue: two unmerged heads, version_locations in pyproject.toml)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from helpers import add_revision, cli, rows

from neon_migrate.migrate import heads
from neon_migrate.migrate.heads import alembic_graph, graph, quick_graph

HEAD = "f096d6eff8ee"


def revision(folder: Path, rev: str, down, name: str | None = None, top: str = "") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / (name or f"{rev}_step.py")
    path.write_text(
        f'"""{rev}"""\n{top}\nrevision = {rev!r}\ndown_revision = {down!r}\n'
        "branch_labels = None\ndepends_on = None\n\n\ndef upgrade():\n    pass\n\n\n"
        "def downgrade():\n    pass\n"
    )
    return path


def same_answer(ini: Path | None, toml: Path | None) -> tuple:
    """The fast reader answered by itself, and as Alembic does."""
    fast = quick_graph(ini, toml)
    assert fast == alembic_graph(ini, toml)
    return fast[1]


@pytest.fixture
def tree(tmp_path, monkeypatch) -> Path:
    """An empty project folder, the current directory (relative locations resolve here)."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "migrations").mkdir()
    return tmp_path


def write_ini(root: Path, *lines: str) -> Path:
    ini = root / "alembic.ini"
    ini.write_text("[alembic]\n" + "\n".join(lines) + "\n")
    return ini


def write_toml(root: Path, body: str) -> Path:
    toml = root / "pyproject.toml"
    toml.write_text('[project]\nname = "x"\n\n[tool.alembic]\n' + body)
    return toml


def test_ini_with_a_fork_and_a_merge(tree):
    versions = tree / "migrations" / "versions"
    revision(versions, "a1", None)
    revision(versions, "b1", "a1")
    revision(versions, "b2", "a1")
    revision(versions, "m1", ("b1", "b2"))
    revision(versions, "c1", "a1")
    ini = write_ini(tree, "script_location = %(here)s/migrations")
    assert same_answer(ini, None) == ("c1", "m1")


def test_pyproject_only(tree):
    revision(tree / "migrations" / "versions", "a1", None)
    toml = write_toml(tree, 'script_location = "%(here)s/migrations"\n')
    assert same_answer(None, toml) == ("a1",)


def test_ini_script_location_with_version_locations_in_pyproject(tree):
    """The layout where the old reader read only script_location/versions (issue 19)."""
    revision(tree / "migrations" / "versions", "a1", None)
    revision(tree / "more", "a2", "a1")
    ini = write_ini(tree, "script_location = %(here)s/migrations")
    toml = write_toml(
        tree, 'version_locations = ["%(here)s/migrations/versions", "%(here)s/more"]\n'
    )
    assert same_answer(ini, toml) == ("a2",)


@pytest.mark.parametrize(
    ("separator", "joiner"), [("os", ":"), ("space", " "), (";", ";"), ("newline", "\n    ")]
)
def test_several_version_locations_split_on_path_separator(tree, separator, joiner):
    revision(tree / "one", "a1", None)
    revision(tree / "two", "a2", "a1")
    revision(tree / "three", "a3", "a2")
    where = joiner.join(str(tree / n) for n in ("one", "two", "three"))
    ini = write_ini(
        tree, "script_location = migrations", f"path_separator = {separator}",
        f"version_locations = {where}",
    )  # fmt: skip
    assert same_answer(ini, None) == ("a3",)


def test_version_locations_without_a_path_separator_split_as_alembic_did(tree):
    revision(tree / "one", "a1", None)
    revision(tree / "two", "a2", "a1")
    ini = write_ini(tree, "script_location = migrations", "version_locations = one, two")
    with pytest.warns(DeprecationWarning):
        assert same_answer(ini, None) == ("a2",)


def test_recursive_version_locations(tree):
    versions = tree / "migrations" / "versions"
    revision(versions, "a1", None)
    revision(versions / "2024", "a2", "a1")
    revision(versions / "2024" / "q4", "a3", "a2")
    revision(versions / "__pycache__", "zz", "a3")  # never a revision, even recursive
    ini = write_ini(
        tree, "script_location = %(here)s/migrations", "recursive_version_locations = true"
    )
    assert same_answer(ini, None) == ("a3",)
    toml = write_toml(tree, "recursive_version_locations = true\n")
    assert same_answer(write_ini(tree, "script_location = migrations"), toml) == ("a3",)
    # not recursive: the subfolders are not read, by Alembic or by us
    assert same_answer(write_ini(tree, "script_location = migrations"), None) == ("a1",)


def test_stray_init_files_and_editor_locks_are_not_revisions(tree):
    versions = tree / "migrations" / "versions"
    revision(versions, "a1", None)
    (versions / "__init__.py").write_text("revision = 'nope'\n")
    (versions / ".#a1_step.py").write_text("revision = 'lock'\n")
    (versions / "notes.txt").write_text("revision = 'text'\n")
    ini = write_ini(tree, "script_location = %(here)s/migrations")
    assert same_answer(ini, None) == ("a1",)


def test_prepend_sys_path_revisions_that_import_the_project(tree):
    """A revision importing the project's own module at its top: Alembic needs
    prepend_sys_path to load it; the fast reader reads without importing."""
    (tree / "src").mkdir()
    (tree / "src" / "shared_bits.py").write_text("TABLE = 't'\n")
    revision(tree / "migrations" / "versions", "a1", None, top="import shared_bits  # noqa")
    ini = write_ini(
        tree, "script_location = migrations", "prepend_sys_path = src", "path_separator = os"
    )
    assert same_answer(ini, None) == ("a1",)


def test_annotated_ids_as_alembic_templates_write_them(tree):
    path = revision(tree / "migrations" / "versions", "a1", None)
    path.write_text(
        path.read_text()
        .replace("revision = 'a1'", "revision: str = 'a1'")
        .replace("down_revision = None", "down_revision: str | None = None")
    )
    assert same_answer(write_ini(tree, "script_location = migrations"), None) == ("a1",)


@pytest.mark.parametrize(
    "change",
    [
        ("revision = 'a2'", "revision = 'a' + '2'"),  # not a literal
        ("revision = 'a2'", "if True:\n    revision = 'a2'"),  # set in a branch
        ("revision = 'a2'", "revision = 'a2'\nrevision, x = 'a3', 1"),  # set twice
        ("down_revision = 'a1'", "down_revision = 'label_of_a1'"),  # not a revision id
    ],
)
def test_the_fast_reader_steps_aside_when_unsure(tree, change):
    versions = tree / "migrations" / "versions"
    revision(versions, "a1", None)
    path = revision(versions, "a2", "a1")
    path.write_text(path.read_text().replace(*change))
    ini = write_ini(tree, "script_location = migrations")
    with pytest.raises(heads._Unsure):
        quick_graph(ini, None)
    try:
        expected = alembic_graph(ini, None)
    except Exception as exc:  # Alembic refuses it: graph() says the same
        with pytest.raises(type(exc)):
            graph(ini, None)
    else:
        assert graph(ini, None) == expected


def test_the_fast_reader_steps_aside_for_sourceless_and_package_locations(tree):
    revision(tree / "migrations" / "versions", "a1", None)
    for option in ("sourceless = true", "version_locations = somepackage:versions"):
        ini = write_ini(tree, "script_location = migrations", option)
        with pytest.raises(heads._Unsure):
            quick_graph(ini, None)


def test_this_project_and_a_stray_init_file(project):
    ini = project["root"] / "alembic.ini"
    assert same_answer(ini, None) == (HEAD,)
    (project["root"] / "migrations" / "versions" / "__init__.py").write_text("")
    assert same_answer(ini, None) == (HEAD,)


def test_health_reads_heads_in_a_pyproject_only_layout(tree):
    """/health/db's readiness guard ("behind head") needs the heads in every layout."""
    from neon_migrate.web.health import code_revisions

    revision(tree / "migrations" / "versions", "a1", None)
    write_toml(tree, 'script_location = "%(here)s/migrations"\n')
    assert code_revisions() == (frozenset({"a1"}), ("a1",))


# --- on a real server --------------------------------------------------------------------------
def test_migrate_reads_version_locations_from_pyproject(project, db_url):
    """Before: the heads were read from script_location/versions alone, so `migrate`
    said "already at head" while a revision in another version location was pending."""
    root = project["root"]
    assert cli("migrate", env=project["env"], cwd=root).returncode == 0
    (root / "more").mkdir()
    add_revision(project, "p1", HEAD, "CREATE TABLE p1_table (id int)").rename(root / "more/p1.py")
    (root / "pyproject.toml").write_text(
        '[tool.alembic]\nversion_locations = ["%(here)s/migrations/versions", "%(here)s/more"]\n'
    )
    result = cli("migrate", env=project["env"], cwd=root)
    assert result.returncode == 0, result.stdout
    assert "applied 1 revision(s)" in result.stdout, result.stdout
    assert rows(db_url, "SELECT version_num FROM alembic_version") == [("p1",)]


def two_heads(project) -> None:
    add_revision(project, "b1", HEAD, "CREATE TABLE b1_table (id int)")
    add_revision(project, "b2", HEAD, "CREATE TABLE b2_table (id int)")


def test_two_unmerged_heads_are_refused_before_connecting(project):
    """Before: `migrate` applied both branches and failed only in verify; --dry-run said
    nothing. Now refused before any connection (the URL points at nothing listening)."""
    two_heads(project)
    env = dict(project["env"], DATABASE_URL="postgresql://u:p@127.0.0.1:9/none")
    for args in (["migrate"], ["migrate", "--dry-run"]):
        started = time.monotonic()
        result = cli(*args, env=env)
        assert result.returncode == 2, result.stdout
        assert time.monotonic() - started < 10
        assert "2 heads (b1, b2)" in result.stdout, result.stdout
        assert "alembic merge heads" in result.stdout
        assert "neon-migrate migrate --to b1" in result.stdout


def test_two_heads_migrate_to_one_of_them(project, db_url):
    two_heads(project)
    result = cli("migrate", "--to", "b2", env=project["env"])
    assert result.returncode == 0, result.stdout
    assert rows(db_url, "SELECT version_num FROM alembic_version") == [("b2",)]
    assert rows(db_url, "SELECT to_regclass('b1_table') IS NULL") == [(True,)]
