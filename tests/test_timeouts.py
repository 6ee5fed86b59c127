"""Durations as PostgreSQL reads them: a positive limit must never become 'no limit'."""

from neon_migrate.connection.timeouts import pg_ms, startup_options
from neon_migrate.settings import Settings


def test_positive_values_never_round_to_zero():
    assert pg_ms(0.0004) == "1ms"
    assert pg_ms(0) == "0ms"  # explicitly no limit
    assert pg_ms(2.5) == "2500ms"


def test_startup_options_keep_the_urls_own():
    settings = Settings(
        MIGRATION_LOCK_TIMEOUT=3, MIGRATION_STATEMENT_TIMEOUT=60, MIGRATION_IDLE_TIMEOUT=30
    )
    ours = (
        "-c lock_timeout=3000ms -c statement_timeout=60000ms "
        "-c idle_in_transaction_session_timeout=30000ms -c idle_session_timeout=30000ms "
        "-c tcp_keepalives_idle=10 -c tcp_keepalives_interval=5 -c tcp_keepalives_count=3 "
        "-c client_connection_check_interval=2000 -c neon_migrate.session=t0k3n"
    )
    url = "postgresql://u:p@h/db?options=endpoint%3Dep-x"
    assert startup_options(url, settings, "t0k3n") == f"endpoint=ep-x {ours}"
    bare = "postgresql://u:p@h/db"
    assert startup_options(bare, settings, "t0k3n") == ours
