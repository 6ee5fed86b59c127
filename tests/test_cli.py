"""`neon-migrate`: one documented command line, results on stdout, progress on stderr,
exit codes from one table."""

from __future__ import annotations

import io
import json
import subprocess
import sys

import pytest
from helpers import CLI, ROOT, add_revision, alembic, cli, rows

from neon_migrate.cli import EXIT_CODES, parser
from neon_migrate.commands import output, registry

HEAD = "f096d6eff8ee"


def split(args: list[str], env: dict) -> subprocess.CompletedProcess:
    """stdout and stderr apart, as a script reading the results sees them."""
    return subprocess.run([*CLI, *args], env=env, capture_output=True, text=True, timeout=120)


def test_help_lists_every_command_and_the_exit_codes(harness_env):
    top = split(["--help"], harness_env)
    assert top.returncode == 0
    for name in registry():
        assert f"    {name}" in top.stdout
        sub = split([name, "--help"], harness_env)
        assert sub.returncode == 0 and "exit codes:" in sub.stdout, name
    assert EXIT_CODES in top.stdout


def test_a_usage_error_exits_2(harness_env):
    assert split(["migrate", "--bogus"], harness_env).returncode == 2
    assert split(["check", "--only", "nope"], harness_env).returncode == 2
    assert split(["downgrade", "nope"], harness_env).returncode == 2  # no such revision
    assert split(["sql", "--to", "nope"], harness_env).returncode == 2


def test_migrate_says_each_revision_as_it_starts_and_ends(project, db_url):
    add_revision(project, "r2", HEAD, "SELECT pg_sleep(0.2)")
    run = split(["migrate"], project["env"])
    assert run.returncode == 0, run.stderr
    progress = run.stderr.splitlines()
    starts = progress.index("applying  r2  r2 test revision ...")
    assert progress[starts + 1].startswith("applied  r2  r2 test revision  (")
    assert "applied 2 revision(s)" in run.stdout  # the outcome is a result
    assert "pool:" not in run.stdout + run.stderr  # quiet by default
    assert rows(db_url, "SELECT version_num FROM alembic_version") == [("r2",)]


def test_verbose_adds_the_pools_a_run_used(harness_env):
    run = split(["-v", "migrate"], harness_env)
    assert run.returncode == 0, run.stderr
    assert "migrate: migrations pool (NullPool)" in run.stderr


def test_dry_run_changes_nothing_and_json_says_what_would_run(project, db_url):
    add_revision(project, "r2", HEAD, "CREATE TABLE dry (id int)")
    add_revision(project, "r3", "r2", source=(
        "    with op.get_context().autocommit_block():\n"
        '        op.execute("CREATE INDEX CONCURRENTLY dry_id ON dry (id)")'))  # fmt: skip
    text = split(["migrate", "--dry-run"], project["env"])
    assert text.returncode == 0, text.stderr
    assert "would apply 3 revision(s)" in text.stdout
    assert "  r2  r2 test revision  [one message]" in text.stdout
    assert "  r3  r3 test revision  [normal: it runs an autocommit_block]" in text.stdout
    assert "(2 as one message each, 1 statement by statement)" in text.stdout
    machine = split(["migrate", "--dry-run", "--json"], project["env"])
    document = json.loads(machine.stdout)
    assert document["dry_run"] is True and document["current"] == []
    assert [(p["revision"], p["path"]) for p in document["pending"]] == [
        (HEAD, "one message"), ("r2", "one message"), ("r3", "normal")]  # fmt: skip
    off = split(["migrate", "--dry-run"], dict(project["env"], MIGRATION_FAST_PATH="false"))
    assert "  r2  r2 test revision  [normal: MIGRATION_FAST_PATH is false]" in off.stdout
    assert rows(db_url, "SELECT to_regclass('alembic_version')") == [(None,)]


def test_migrate_to_a_revision_then_json(project, db_url):
    add_revision(project, "r2", HEAD, "CREATE TABLE later (id int)")
    run = split(["migrate", "--to", HEAD, "--json"], project["env"])
    assert run.returncode == 0, run.stderr
    document = json.loads(run.stdout)  # stdout is the JSON alone
    assert document["ok"] is True and [a["revision"] for a in document["applied"]] == [HEAD]
    assert rows(db_url, "SELECT version_num FROM alembic_version") == [(HEAD,)]
    unknown = split(["migrate", "--to", "nope"], project["env"])
    assert unknown.returncode == 2 and "--to nope" in unknown.stderr


def test_sql_pending_prints_only_what_the_database_lacks(project):
    assert split(["migrate"], project["env"]).returncode == 0
    add_revision(project, "r2", HEAD, "CREATE TABLE pending_one (id int)")
    run = split(["sql", "--pending"], project["env"])
    assert run.returncode == 0, run.stderr
    assert "CREATE TABLE pending_one" in run.stdout and "CREATE TABLE account" not in run.stdout
    assert split(["migrate"], project["env"]).returncode == 0
    done = split(["sql", "--pending"], project["env"])
    assert done.returncode == 0 and done.stdout == "" and "nothing pending" in done.stderr


def test_an_error_with_json_is_also_a_document(harness_env):
    env = dict(harness_env, DB_POOL_SIZE="0")
    run = split(["migrate", "--json"], env)
    assert run.returncode == 2 and run.stderr.startswith("error: DB_POOL_SIZE")
    assert json.loads(run.stdout) == {"version": 1, "command": "migrate", "ok": False,
                                      "error": run.stderr[7:].strip(), "exit_code": 2}  # fmt: skip


def test_revision_that_uses_an_unimported_name_fails_loudly(project):
    template = project["root"] / "migrations" / "script.py.mako"
    template.write_text(template.read_text().replace(
        '${upgrades if upgrades else "pass"}', "sqlmodel.sql.sqltypes.AutoString()"))  # fmt: skip
    run = split(["revision", "--empty", "-m", "broken"], project["env"])
    assert run.returncode == 1
    assert "uses sqlmodel but never defines or imports it (line" in run.stderr


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize(("no_color", "flag", "expected"), [
    ("", False, True), ("1", False, False), ("", True, False)])  # fmt: skip
def test_colour_only_on_a_terminal_and_never_with_no_color(monkeypatch, no_color, flag, expected):
    monkeypatch.setenv("NO_COLOR", no_color)
    output.configure(verbose=False, colour=not flag)
    try:
        assert output.colour(_Terminal()) is expected
        assert output.colour(io.StringIO()) is False  # a pipe or a file: never
    finally:
        output.configure(verbose=False, colour=True)


def test_parser_accepts_what_the_readme_documents():
    args = parser().parse_args(["migrate", "--to", "abc", "--dry-run", "--json"])
    assert (args.to, args.dry_run, args.json) == ("abc", True, True)


def test_serve_runs_the_example_app(harness_env):
    import socket
    import time
    import urllib.request

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = dict(harness_env, PYTHONPATH=str(ROOT))
    server = subprocess.Popen([*CLI, "serve", "--port", str(port)], env=env, text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT)  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(
                    f"http://127.0.0.1:{port}/health/db/pool", timeout=5
                ) as r:
                    assert r.status == 200
                    break
            except OSError:
                assert server.poll() is None and time.monotonic() < deadline
                time.sleep(0.2)
    finally:
        server.terminate()
        output = server.communicate(timeout=30)[0]
    assert f"serve: app.main:app on http://127.0.0.1:{port}" in output
    assert "Traceback" not in output


def test_a_project_configured_in_pyproject_only(tmp_path, harness_env, db_url):
    """[tool.alembic] and [tool.neon-migrate] in pyproject.toml, no alembic.ini: migrate,
    status, check and a plain `alembic upgrade` all read the same configuration."""
    import shutil

    for folder in ("migrations", "app"):
        shutil.copytree(ROOT / folder, tmp_path / folder, ignore=shutil.ignore_patterns("__py*"))
    (tmp_path / "pyproject.toml").write_text(
        '[tool.alembic]\nscript_location = "%(here)s/migrations"\nprepend_sys_path = ["."]\n'
        '\n[tool.neon-migrate]\ntarget_metadata = "app.models:metadata"\n'
    )
    env = {k: v for k, v in harness_env.items() if k != "ALEMBIC_CONFIG"}
    run = subprocess.run([*CLI, "migrate"], env=env, cwd=tmp_path, capture_output=True,
                         text=True, timeout=120)  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert rows(db_url, "SELECT version_num FROM alembic_version") == [(HEAD,)]
    checked = subprocess.run([*CLI, "check", "--json"], env=env, cwd=tmp_path,
                             capture_output=True, text=True, timeout=120)  # fmt: skip
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert json.loads(checked.stdout)["ok"] is True
    plain = subprocess.run([sys.executable, "-m", "alembic", "current"], env=env, cwd=tmp_path,
                           capture_output=True, text=True, timeout=120)  # fmt: skip
    assert plain.returncode == 0 and HEAD in plain.stdout, plain.stdout + plain.stderr


def test_no_target_metadata_and_no_pyproject(project, db_url):
    """Before: reading the harness's options fell through to ./pyproject.toml, which the
    alembic command names even when it is absent, and crashed on the missing file."""
    ini = project["root"] / "alembic.ini"
    ini.write_text(ini.read_text().replace("target_metadata = app.models:metadata\n", ""))
    assert not (project["root"] / "pyproject.toml").exists()
    for args in (["upgrade", "head"], ["current"]):
        result = alembic(*args, env=project["env"], cwd=project["root"])
        assert result.returncode == 0 and "Traceback" not in result.stdout, result.stdout
    assert cli("status", env=project["env"], cwd=project["root"]).returncode == 0


def test_every_command_module_is_registered_once():
    """A command per module: a module that defines COMMAND but is missing from MODULES
    would silently be no command at all."""
    import importlib
    import pkgutil

    import neon_migrate.commands as package
    from neon_migrate.commands import MODULES

    defining = [
        info.name
        for info in pkgutil.iter_modules(package.__path__)
        if hasattr(importlib.import_module(f"{package.__name__}.{info.name}"), "COMMAND")
    ]
    assert sorted(defining) == sorted(MODULES)
    names = [command.name for command in registry().values()]
    assert len(names) == len(MODULES) == len(set(names))


def test_check_help_names_the_checks_the_runner_has():
    """`check --help` lists the ids without importing the checks (start-up): kept equal."""
    from neon_migrate.check.predeploy import CHECK_IDS
    from neon_migrate.commands.check import CHECK_IDS as LISTED

    assert ", ".join(CHECK_IDS) == LISTED
