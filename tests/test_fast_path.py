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


def test_every_corpus_revision_gets_a_path_and_a_reason(plans):
    assert len(plans) == REVISION_COUNT
    for revision, chosen in sorted(plans.items()):
        print(f"{revision}  {'fast  ' if chosen.fast else 'normal'}  {chosen.reason}")
        assert chosen.reason
    normal = {revision for revision, chosen in plans.items() if not chosen.fast}
    assert normal >= MUST_BE_NORMAL, MUST_BE_NORMAL - normal
    assert len(normal) < REVISION_COUNT / 2, "most of a real chain is plain DDL"


def test_a_plain_revision_renders_its_ddl_and_nothing_of_the_transaction(plans):
    fast = [chosen for chosen in plans.values() if chosen.fast]
    assert fast
    for chosen in fast:
        assert not chosen.sql.lstrip().upper().startswith(("BEGIN", "COMMIT"))
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
