"""Durations as PostgreSQL reads them: a positive limit must never become 'no limit'."""

from app.db.timeouts import pg_ms, startup_options
from app.settings import Settings


def test_positive_values_never_round_to_zero():
    assert pg_ms(0.0004) == "1ms"
    assert pg_ms(0) == "0ms"  # explicitly no limit
    assert pg_ms(2.5) == "2500ms"


def test_startup_options_keep_the_urls_own():
    settings = Settings(MIGRATION_LOCK_TIMEOUT=3, MIGRATION_STATEMENT_TIMEOUT=60)
    url = "postgresql://u:p@h/db?options=endpoint%3Dep-x"
    assert startup_options(url, settings) == (
        "endpoint=ep-x -c lock_timeout=3000ms -c statement_timeout=60000ms"
    )
    bare = "postgresql://u:p@h/db"
    assert startup_options(bare, settings) == "-c lock_timeout=3000ms -c statement_timeout=60000ms"
