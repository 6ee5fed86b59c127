"""Every Alembic front-end gets the harness's safety from its env.py, on a real server.

A Flask + Flask-SQLAlchemy + Flask-Migrate app (tests/projects/flask_app) starts with
Flask-Migrate's own env.py and alembic.ini, made by `flask db init` here; it is then
adopted as a user would, with `neon-migrate init`. Each front-end then applies a probe
revision while another session holds the migration lock: it must wait for it, run the
revision with the harness's timeouts while holding the lock itself (the probe records both
from inside the revision), and read the database's revision back at the end.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import psycopg
import pytest
from helpers import CLI, ROOT, rows

from neon_migrate.migrate.lock import LOCK_KEY

SHOP = ROOT / "tests" / "projects" / "flask_app"
HEAD = "c7e93a15f402"
# What the harness sets with its defaults (MIGRATION_LOCK_TIMEOUT=5, _STATEMENT_TIMEOUT=600).
HARNESS = ("5s", "10min", 1)
STOCK = ("0", "0", 0)  # no timeouts, no lock

# Any session polling for the migration lock: our own engine's or a caller's connection.
POLLING = """
    SELECT count(*) FROM pg_stat_activity
    WHERE query LIKE 'SELECT pg_try_advisory%lock(%' AND datname = current_database()
      AND pid <> pg_backend_pid()
"""

PROBE = '''"""probe {rev}"""
from alembic import op

revision = "{rev}"
down_revision = "{down}"
branch_labels = None
depends_on = None


def upgrade():
    # Outside the models' schema: autogenerate and `flask db check` do not compare it.
    op.execute("CREATE SCHEMA IF NOT EXISTS probe")
    op.execute(
        "CREATE TABLE IF NOT EXISTS probe.seen (revision text, lock_timeout text, "
        "statement_timeout text, holds_lock bigint)"
    )
    op.execute(
        "INSERT INTO probe.seen SELECT '{rev}', current_setting('lock_timeout'), "
        "current_setting('statement_timeout'), (SELECT count(*) FROM pg_locks "
        "WHERE locktype = 'advisory' AND pid = pg_backend_pid())"
    )


def downgrade():
    pass  # irreversible: a test probe
'''


@pytest.fixture(scope="module")
def stock(tmp_path_factory) -> Path:
    """Flask-Migrate's own env.py, alembic.ini and script.py.mako, made by `flask db init`
    in a copy of the app: once per module (no database is involved), copied per test."""
    root = tmp_path_factory.mktemp("stock") / "shop"
    shutil.copytree(SHOP, root, ignore=shutil.ignore_patterns("__pycache__"))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_URL", "ALEMBIC"))}
    env.update(FLASK_APP="shop:create_app", PYTHONPATH=str(root))
    made = flask("db", "init", "-d", "stock", env=env, cwd=root)
    assert made.returncode == 0, made.stdout
    return root / "stock"


@pytest.fixture
def shop(tmp_path: Path, harness_env: dict, stock: Path) -> dict:
    """The Flask app in a scratch folder, with Flask-Migrate's own env.py and alembic.ini."""
    root = tmp_path / "shop"
    shutil.copytree(SHOP, root, ignore=shutil.ignore_patterns("__pycache__"))
    # No ALEMBIC_CONFIG: each front-end finds Flask-Migrate's migrations/alembic.ini itself
    # (`alembic` is told with -c, as init says).
    env = dict(harness_env, FLASK_APP="shop:create_app", PYTHONPATH=str(root))
    del env["ALEMBIC_CONFIG"]
    for name in ("alembic.ini", "env.py", "script.py.mako"):
        shutil.copy(stock / name, root / "migrations" / name)
    assert "current_app" in (root / "migrations" / "env.py").read_text()
    return {"root": root, "env": env, "head": HEAD}


def adopt(shop: dict) -> str:
    """`neon-migrate init` in the app's folder, as the README's Flask section says; its
    output (its report, then its notes). It must have put the harness's env.py where
    Flask-Migrate's was."""
    result = subprocess.run([*CLI, "init"], env=shop["env"], cwd=shop["root"],
                            capture_output=True, text=True, timeout=120)  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert "current_app" not in (shop["root"] / "migrations" / "env.py").read_text()
    return result.stdout + result.stderr


def add_probe(shop: dict, rev: str) -> None:
    path = shop["root"] / "migrations" / "versions" / f"{rev}_probe.py"
    path.write_text(PROBE.format(rev=rev, down=shop["head"]))
    shop["head"] = rev


def seen(db_url: str, rev: str) -> tuple:
    """What the probe revision `rev` saw from inside its transaction."""
    found = rows(
        db_url,
        "SELECT lock_timeout, statement_timeout, holds_lock FROM probe.seen "
        f"WHERE revision = '{rev}'",
    )
    assert len(found) == 1, found
    return found[0]


def flask(*args: str, env: dict, cwd: Path) -> subprocess.CompletedProcess:
    return _run([sys.executable, "-m", "flask", *args], env, cwd)


def _run(args: list[str], env: dict, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(args, env=env, cwd=cwd, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, timeout=180)  # fmt: skip


def behind_the_lock(args: list[str], env: dict, cwd: Path, db_url: str) -> tuple[int, str]:
    """Run `args` while another session holds the migration lock; it must be seen polling
    for the lock before the holder lets go. Returns its exit code and output."""
    with psycopg.connect(db_url, autocommit=True) as holder:
        holder.execute("SELECT pg_advisory_lock(%s)", (LOCK_KEY,))
        run = subprocess.Popen(args, env=env, cwd=cwd, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)  # fmt: skip
        deadline = time.monotonic() + 60
        while holder.execute(POLLING).fetchone()[0] < 1:
            if run.poll() is not None or time.monotonic() > deadline:
                run.kill()
                output = run.communicate()[0]
                pytest.fail(f"{args[2:]} did not wait for the migration lock:\n{output}")
            time.sleep(0.05)
        time.sleep(0.3)  # it keeps waiting: still running, lock still ours
        assert run.poll() is None
        holder.execute("SELECT pg_advisory_unlock(%s)", (LOCK_KEY,))
        output = run.communicate(timeout=180)[0]
    return run.returncode, output


@pytest.mark.slow
def test_flask_migrate_stock_env_py_gets_no_lock_and_no_timeouts(shop, db_url):
    """Before adoption: `flask db upgrade` through Flask-Migrate's env.py works, and runs
    while another session holds the migration lock, with no timeouts set."""
    add_probe(shop, "p0stock")
    with psycopg.connect(db_url, autocommit=True) as holder:
        holder.execute("SELECT pg_advisory_lock(%s)", (LOCK_KEY,))
        result = flask("db", "upgrade", env=shop["env"], cwd=shop["root"])
    assert result.returncode == 0, result.stdout
    assert seen(db_url, "p0stock") == STOCK
    assert "(read back)" not in result.stdout


@pytest.mark.slow
def test_every_flask_db_command_runs_through_the_harness(shop, db_url):
    root, env = shop["root"], shop["env"]
    assert flask("db", "upgrade", env=env, cwd=root).returncode == 0  # adopting a live db
    said = adopt(shop)
    # One configuration, Flask-Migrate's, with what the front-ends outside the app need.
    assert "init: edited migrations/alembic.ini: added script_location = %(here)s, " \
        "prepend_sys_path = ., path_separator = os, " \
        "target_metadata = shop.models:db.metadata" in said, said  # fmt: skip
    assert "init: moved migrations/env.py to env.py.before-neon-migrate" in said
    assert "init: Flask-Migrate's layout (migrations/alembic.ini; current_app in " in said
    assert "init: kept the existing chain: 3 revision(s) in migrations/versions, " \
        f"head {HEAD}" in said  # fmt: skip
    assert "init: the models are shop.models:db.metadata" in said
    assert not (root / "alembic.ini").exists() and "wrote alembic.ini" not in said
    ini = (root / "migrations" / "alembic.ini").read_text()  # [alembic]'s lines stay in it
    assert ini.index("target_metadata = shop") < ini.index("# Logging configuration\n[loggers]")
    readme = (ROOT / "README.md").read_text().split("## Using it from Flask\n")[1]
    shown = [ln for ln in readme.split("\n## ")[0].splitlines() if ln.startswith("init: ")]
    assert shown == said.splitlines()  # the README's Flask section shows what init prints
    files = {p: p.read_bytes() for p in root.rglob("*") if p.is_file()}
    again = _run([*CLI, "init"], env, root)
    assert again.returncode == 0 and "edited" not in again.stdout, again.stdout
    assert {p: p.read_bytes() for p in root.rglob("*") if p.is_file()} == files
    status = _run([*CLI, "status"], env, root)  # what `flask db upgrade` applied before
    assert status.returncode == 0 and f"at {HEAD}" in status.stdout, status.stdout
    flask_db = [sys.executable, "-m", "flask", "db"]

    add_probe(shop, "p1flask")
    code, output = behind_the_lock([*flask_db, "upgrade"], env, root, db_url)
    assert code == 0, output
    assert "waiting up to 60s for the migration lock" in output
    assert seen(db_url, "p1flask") == HARNESS
    assert "the database is now at p1flask (read back)" in output

    # `current` only reads: it answers while another run holds the lock.
    with psycopg.connect(db_url, autocommit=True) as holder:
        holder.execute("SELECT pg_advisory_lock(%s)", (LOCK_KEY,))
        current = flask("db", "current", env=env, cwd=root)
    assert current.returncode == 0 and "p1flask (head)" in current.stdout, current.stdout

    # Comparisons wait for a running migration: a half-migrated schema is no baseline.
    code, output = behind_the_lock([*flask_db, "check"], env, root, db_url)
    assert code == 0 and "No new upgrade operations detected" in output, output
    versions = sorted(p.name for p in (root / "migrations" / "versions").glob("*.py"))
    code, output = behind_the_lock([*flask_db, "migrate", "-m", "nothing"], env, root, db_url)
    assert code == 0, output
    assert "no revision written" in output, output  # in particular, no drop of our history
    assert sorted(p.name for p in (root / "migrations" / "versions").glob("*.py")) == versions

    add_probe(shop, "p2sql")
    sql = flask("db", "upgrade", "--sql", "p1flask:p2sql", env=env, cwd=root)
    assert sql.returncode == 0, sql.stdout
    assert "SET LOCAL lock_timeout = '5000ms';" in sql.stdout
    assert "INSERT INTO neon_migrate_history" in sql.stdout


@pytest.mark.slow
def test_autogenerate_through_flask_uses_the_apps_models_and_options(shop, db_url):
    """`flask db migrate` compares the app's db.metadata (not alembic.ini's, here pointed
    at nothing) with compare_type from Migrate(...), and never proposes dropping the
    harness's history table."""
    root, env = shop["root"], shop["env"]
    adopt(shop)
    ini = root / "migrations" / "alembic.ini"
    ini.write_text(ini.read_text().replace("shop.models:db.metadata", "no_such_module:x"))
    assert flask("db", "upgrade", env=env, cwd=root).returncode == 0
    assert rows(db_url, "SELECT to_regclass('neon_migrate_history')::text") == [
        ("neon_migrate_history",)
    ]
    models = root / "shop" / "models.py"
    models.write_text(models.read_text().replace("String(100)", "String(120)"))
    result = flask("db", "migrate", "-m", "longer names", env=env, cwd=root)
    assert result.returncode == 0, result.stdout
    written = [p for p in (root / "migrations" / "versions").glob("*longer_names.py")]
    assert len(written) == 1, result.stdout
    source = written[0].read_text()
    assert "type_=sa.String(length=120)" in source  # compare_type, as the app asked
    assert "batch_alter_table" not in source  # render_as_batch=False, as the app asked
    assert "neon_migrate_history" not in source


@pytest.mark.slow
def test_other_front_ends_on_the_flask_project_get_the_same_safety(shop, db_url):
    """The same project, outside the app: the alembic command, neon-migrate, a program
    calling alembic.command.upgrade(), and pytest-alembic."""
    root, env = shop["root"], shop["env"]
    adopt(shop)
    assert flask("db", "upgrade", env=env, cwd=root).returncode == 0

    add_probe(shop, "p3alembic")
    alembic = [sys.executable, "-m", "alembic", "-c", "migrations/alembic.ini"]
    code, output = behind_the_lock([*alembic, "upgrade", "head"], env, root, db_url)
    assert code == 0, output
    assert seen(db_url, "p3alembic") == HARNESS
    assert "the database is now at p3alembic (read back)" in output

    add_probe(shop, "p4neon")
    code, output = behind_the_lock([*CLI, "migrate"], env, root, db_url)
    assert code == 0, output
    assert seen(db_url, "p4neon") == HARNESS
    assert "now at p4neon" in output
    status = _run([*CLI, "status"], env, root)
    assert status.returncode == 0, status.stdout
    assert "p4neon" in status.stdout and "0 pending" in status.stdout

    # The check rehearses a pending revision; never while another run holds the lock.
    add_probe(shop, "p4check")
    with psycopg.connect(db_url, autocommit=True) as holder:
        holder.execute("SELECT pg_advisory_lock(%s)", (LOCK_KEY,))
        check = _run([*CLI, "check"], env, root)
    assert check.returncode == 1, check.stdout
    assert "a migration is running now (the migration lock is held by" in check.stdout
    check = _run([*CLI, "check"], env, root)
    assert check.returncode == 0 and "SAFE TO SHIP" in check.stdout, check.stdout
    assert rows(db_url, "SELECT count(*) FROM probe.seen WHERE revision = 'p4check'") == [(0,)]

    add_probe(shop, "p5api")
    program = textwrap.dedent(f"""
        from alembic import command
        from alembic.config import Config
        command.upgrade(Config({str(root / "migrations" / "alembic.ini")!r}), "head")
    """)
    code, output = behind_the_lock([sys.executable, "-c", program], env, root, db_url)
    assert code == 0, output
    assert seen(db_url, "p5api") == HARNESS
    assert "the database is now at p5api (read back)" in output

    add_probe(shop, "p6pytest")
    program = textwrap.dedent(f"""
        import os
        import pytest_alembic
        from pytest_alembic.config import Config
        from sqlalchemy import create_engine
        from sqlalchemy.pool import NullPool
        url = os.environ["DATABASE_URL"].replace("postgresql://", "postgresql+psycopg2://")
        engine = create_engine(url, poolclass=NullPool)
        config = Config.from_raw_config({{"file": {str(root / "migrations" / "alembic.ini")!r}}})
        with pytest_alembic.runner(config=config, engine=engine) as runner:
            runner.migrate_up_to("heads")
    """)
    code, output = behind_the_lock([sys.executable, "-c", program], env, root, db_url)
    assert code == 0, output
    assert seen(db_url, "p6pytest") == HARNESS
    assert "the database is now at p6pytest (read back)" in output


def test_an_apps_configure_args_never_switch_the_harness_hooks_off():
    """Migrate(app, db, include_name=..., transaction_per_migration=False, ...): the app's
    choices apply, the harness's table stays out of autogenerate, revisions stay apart."""
    from neon_migrate.migrate.autogenerate import autogenerate_options
    from neon_migrate.migrate.flask_app import merged
    from neon_migrate.migrate.revision_session import keep_stamp

    def everything(name, type_, parent_names) -> bool:
        return True

    def theirs_applied(*args) -> None:
        pass

    ours = {"compare_type": True, "on_version_apply": [keep_stamp], **autogenerate_options()}
    options = merged(ours, {
        "compare_type": False, "render_as_batch": True, "include_name": everything,
        "transaction_per_migration": False, "on_version_apply": theirs_applied,
        "connection": object(),
    })  # fmt: skip
    assert options["compare_type"] is False and options["render_as_batch"] is True
    assert options["transaction_per_migration"] is True
    assert options["on_version_apply"] == [keep_stamp, theirs_applied]
    assert "connection" not in options  # env.py's own, never the app's
    assert options["include_name"]("customer", "table", {}) is True
    assert options["include_name"]("neon_migrate_history", "table", {}) is False


@pytest.mark.slow
def test_flask_db_upgrade_refuses_to_migrate_another_database_than_the_apps(shop, db_url):
    """DATABASE_URL unset: the app falls back to SQLite while migrations would run on
    DATABASE_URL_DIRECT. `flask db upgrade` says so instead of migrating a database the
    app does not use."""
    adopt(shop)
    env = dict(shop["env"], DATABASE_URL_DIRECT=db_url)
    del env["DATABASE_URL"]
    result = flask("db", "upgrade", env=env, cwd=shop["root"])
    assert result.returncode == 1, result.stdout
    assert "Traceback" not in result.stdout
    line = result.stdout.strip().splitlines()[-1]
    assert "Error: the Flask app's database (sqlite:///" in line, line
    assert (
        "/instance/shop.db, its SQLALCHEMY_DATABASE_URI) is not the one migrations run on "
        "(DATABASE_URL_DIRECT: postgresql://" in line
    ), line
    assert "Fix: give the app the pooled URL of that database" in result.stdout
    assert rows(db_url, "SELECT to_regclass('alembic_version')::text") == [(None,)]


@pytest.mark.slow
def test_a_drop_of_the_history_table_autogenerated_outside_the_harness_fails_the_check(
    shop, db_url
):
    """Flask-Migrate's stock env.py does not know the harness's table: `flask db migrate`
    there (a teammate's branch not yet adopted) writes a drop of it. Through the harness's
    env.py the check's lint names that revision, with the fix."""
    root, env = shop["root"], shop["env"]
    stock = (root / "migrations" / "env.py").read_text()
    adopt(shop)
    assert flask("db", "upgrade", env=env, cwd=root).returncode == 0  # the table exists now
    (root / "migrations" / "env.py").write_text(stock)
    result = flask("db", "migrate", "-m", "from a stock env", env=env, cwd=root)
    assert result.returncode == 0, result.stdout
    written = list((root / "migrations" / "versions").glob("*from_a_stock_env.py"))
    assert len(written) == 1 and "op.drop_table('neon_migrate_history')" in written[0].read_text()

    shutil.copy(ROOT / "neon_migrate" / "templates" / "env.py", root / "migrations" / "env.py")
    check = _run([*CLI, "check", "--json"], env, root)
    assert check.returncode == 1, check.stdout
    report = json.loads(check.stdout[check.stdout.index("{") :])
    lint = next(c for c in report["checks"] if c["id"] == "lint")
    assert lint["status"] == "fail" and "drops-history-table" in lint["message"], report
