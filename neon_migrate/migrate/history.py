"""The harness's own record of every revision applied: when, how long, by whom, and the
checksum of the file as it ran. Written in the same transaction as Alembic's stamp."""

from __future__ import annotations

HISTORY_TABLE = "neon_migrate_history"  # autogenerate and drift never compare it
