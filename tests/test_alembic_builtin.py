"""pytest-alembic's built-in checks, run through our env.py on a fresh database.

They hand env.py a connection in `config.attributes["connection"]`, so these also prove
that path: lock, timeouts and per-revision reporting on a caller's connection.
"""

from __future__ import annotations

import pytest
from helpers import ROOT
from pytest_alembic.plugin.fixtures import alembic_runner  # noqa: F401  (fixture)
from pytest_alembic.tests import (  # noqa: F401  (collected as tests here)
    test_model_definitions_match_ddl,
    test_single_head_revision,
    test_up_down_consistency,
    test_upgrade,
)
from sqlalchemy import create_engine
from sqlalchemy.pool import NullPool


@pytest.fixture
def alembic_config():
    return {"file": str(ROOT / "alembic.ini")}


@pytest.fixture
def alembic_engine(harness_env, db_url):
    engine = create_engine(
        db_url.replace("postgresql://", "postgresql+psycopg2://"), poolclass=NullPool
    )
    yield engine
    engine.dispose()
