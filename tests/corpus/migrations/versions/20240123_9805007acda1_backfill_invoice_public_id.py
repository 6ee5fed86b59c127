"""backfill invoice.public_id in batches

invoice is the biggest table: one UPDATE of every row would hold row locks on all of
it for minutes and bloat it in one go. 500 rows per statement instead.

Revision ID: 9805007acda1
Revises: 88bbbaacbad0
Create Date: 2024-01-23 09:12:04.335671

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "9805007acda1"
down_revision: str | None = "88bbbaacbad0"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BATCH = sa.text(
    """
    UPDATE invoice
    SET public_id = gen_random_uuid()
    WHERE id IN (SELECT id FROM invoice WHERE public_id IS NULL ORDER BY id LIMIT 500)
    """
)


def upgrade() -> None:
    # The default statement timeout is too short for the largest tenants.
    op.execute("SET statement_timeout = '30min'")
    op.execute("SET lock_timeout = '10s'")
    bind = op.get_bind()
    while True:
        result = bind.execute(BATCH)
        if result.rowcount == 0:
            break


def downgrade() -> None:
    # nothing to undo: 88bbbaacbad0's downgrade drops the column
    pass
