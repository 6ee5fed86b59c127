"""Which corpus revision could go as one message, and why; decided without a database."""

from __future__ import annotations

import sys

import pytest
from alembic.config import Config
from alembic.script import ScriptDirectory
from helpers import ROOT

from neon_migrate.migrate.fast_path import plan

sys.path.insert(0, str(ROOT / "tests" / "corpus"))
from corpus_models import metadata
from features import FEATURE_REVISIONS, REVISION_COUNT

# Revisions that must take the normal path, whatever else they do.
MUST_BE_NORMAL = {
    *FEATURE_REVISIONS["autocommit_block"],
    *FEATURE_REVISIONS["commits_midway"],
    *FEATURE_REVISIONS["commit_then_concurrent_index"],
}


@pytest.fixture(scope="module")
def plans():
    script = ScriptDirectory.from_config(Config(str(ROOT / "tests" / "corpus" / "alembic.ini")))
    return {s.revision: plan(s, (17, 2), metadata) for s in script.walk_revisions()}


# The corpus revisions that take the normal path, and why; every other one goes as one
# message. A change here is a change in what a real chain costs: say why in the commit.
NORMAL_PATH = {
    "0d6968191dc8": "it runs an autocommit_block",
    "1cf7cd285418": "it changes a session setting (the normal path puts it back)",
    "2c49ab5e02ae": "it uses the connection (get_bind)",
    "4ffc8201854b": "it runs an autocommit_block",
    "627067246ae9": "it runs an autocommit_block",
    "68ac0b3f28e4": "it uses the connection (get_bind)",
    "6d2e748e9c6b": "it changes a session setting (the normal path puts it back)",
    "7d8f6fbae545": "it runs an autocommit_block",
    "8048aa8fb792": "it runs an autocommit_block",
    "8245bd004cbf": "it runs an autocommit_block",
    "9805007acda1": "it uses the connection (get_bind)",
    "b0880f315b2f": "it changes a session setting (the normal path puts it back)",
    "d5c846888ac0": "it creates an index IF NOT EXISTS (the normal path refuses one left INVALID)",
    "f06ccf9dc89a": "it runs an autocommit_block",
}


def test_each_corpus_revision_takes_the_path_named_here_for_the_reason_named_here(plans):
    assert len(plans) == REVISION_COUNT
    normal = {revision: chosen.reason for revision, chosen in plans.items() if not chosen.fast}
    assert normal == NORMAL_PATH
    assert set(NORMAL_PATH) >= MUST_BE_NORMAL, MUST_BE_NORMAL - set(NORMAL_PATH)
    fast = {chosen.reason for chosen in plans.values() if chosen.fast}
    assert fast == {"its upgrade() renders to SQL"}
    print(f"\n{REVISION_COUNT - len(normal)} of {REVISION_COUNT} go as one message")


def test_a_plain_revision_renders_its_ddl_and_nothing_of_the_transaction(plans):
    fast = [chosen for chosen in plans.values() if chosen.fast]
    assert fast
    for chosen in fast:
        assert not chosen.sql.lstrip().upper().startswith(("BEGIN", "COMMIT"))
        assert all(not s.endswith(";") for s in chosen.statements)  # joined by the sender
        assert "alembic_version" not in chosen.sql  # the stamp is the run's, not the body's


def test_a_revision_may_opt_out(tmp_path):
    versions = tmp_path / "versions"
    versions.mkdir()
    (versions / "r1.py").write_text(
        '"""r1"""\nfrom alembic import op\n\nrevision = "r1"\ndown_revision = None\n'
        "neon_migrate_fast_path = False\n\n\n"
        'def upgrade():\n    op.execute("CREATE TABLE t (id int)")\n'
    )
    (tmp_path / "script.py.mako").write_text("")
    config = Config()
    config.set_main_option("script_location", str(tmp_path))
    script = ScriptDirectory.from_config(config).get_revision("r1")
    chosen = plan(script, (17, 2))
    assert not chosen.fast and chosen.reason == "it sets neon_migrate_fast_path = False"


def _one_revision(tmp_path, body: str, header: str = ""):
    versions = tmp_path / "versions"
    versions.mkdir()
    (versions / "r1.py").write_text(
        f'"""r1"""\nfrom alembic import op\n{header}\nrevision = "r1"\ndown_revision = None\n\n\n'
        f"def upgrade():\n{body}\n"
    )
    (tmp_path / "script.py.mako").write_text("")
    config = Config()
    config.set_main_option("script_location", str(tmp_path))
    return ScriptDirectory.from_config(config).get_revision("r1")


def test_a_plugins_operation_takes_the_normal_path(tmp_path, monkeypatch):
    """An operation a plugin registers may read the database online (as an enum sync does)
    and render something else offline: never sent as rendered."""
    (tmp_path / "enum_plugin.py").write_text(
        "from alembic.operations import MigrateOperation, Operations\n\n\n"
        '@Operations.register_operation("sync_values")\n'
        "class SyncValues(MigrateOperation):\n"
        "    @classmethod\n"
        "    def sync_values(cls, operations):\n"
        "        return operations.invoke(cls())\n\n\n"
        "@Operations.implementation_for(SyncValues)\n"
        "def sync_values(operations, operation):\n"
        '    operations.execute("SELECT 1")\n'
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    script = _one_revision(tmp_path, "    op.sync_values()", header="import enum_plugin  # noqa\n")
    chosen = plan(script, (17, 2))
    assert not chosen.fast
    assert chosen.reason == "it runs a plugin's operation (enum_plugin.SyncValues)"


def test_sql_with_a_parameter_without_a_value_takes_the_normal_path(tmp_path):
    """Offline, Alembic renders `:missing` as NULL; online it is an error, and must stay one."""
    script = _one_revision(tmp_path, '    op.execute("UPDATE t SET v = :missing")')
    chosen = plan(script, (17, 2))
    assert not chosen.fast
    assert chosen.reason == "it executes SQL with a parameter without a value (:missing)"


def test_a_revision_that_does_not_render_takes_the_normal_path(tmp_path):
    script = _one_revision(tmp_path, "    op.execute(object())")  # fails online too
    chosen = plan(script, (17, 2))
    assert not chosen.fast and chosen.reason.startswith("it does not render as SQL ("), chosen
