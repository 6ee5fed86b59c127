"""Timeouts for the app's sessions that survive Neon's pooler, set by a revision.

A `SET statement_timeout` on connect goes to whichever server session PgBouncer lends
in transaction mode, and stays there for the next client; a startup `options` string is
rejected. What survives pooling is a default stored with the role: PostgreSQL applies
it to every new server session the pooler opens for that role and database. So the app's
timeouts are schema, and a revision sets them:

    from neon_migrate.migrate.app_timeouts import set_app_timeouts

    def upgrade():
        set_app_timeouts(statement_timeout="30s", idle_in_transaction_session_timeout="60s")

    def downgrade():
        set_app_timeouts(statement_timeout=None, idle_in_transaction_session_timeout=None)

The migrations' own session is unaffected: its startup options win over role defaults.
`make verify` shows the values the app's door really has.
"""

from __future__ import annotations

from alembic import op

SETTINGS = {
    "statement_timeout",
    "idle_in_transaction_session_timeout",
    "lock_timeout",
    "idle_session_timeout",
}


def _literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def set_app_timeouts(role: str | None = None, **timeouts: str | None) -> None:
    """Store each timeout given as the default of `role` (the migrating role when None)
    in the current database; None removes it (RESET). Values are PostgreSQL durations."""
    unknown = sorted(set(timeouts) - SETTINGS)
    if unknown:
        raise ValueError(f"not a timeout set_app_timeouts knows: {', '.join(unknown)}")
    who = "current_user" if role is None else _literal(role)
    for name, value in timeouts.items():
        action = f"RESET {name}" if value is None else f"SET {name} = %L"
        argument = "" if value is None else f", {_literal(str(value))}"
        op.execute(
            "DO $$ BEGIN EXECUTE format("
            f"{_literal('ALTER ROLE %I IN DATABASE %I ' + action)}, {who}, current_database()"
            f"{argument}); END $$"
        )
